/*
 * Debian's Chromium driven by playwright-core for the dashboard tests: launched
 * headless (skipped visibly when missing, unless POSTINO_REQUIRE_PEERS=1), and
 * numbered screenshots of each page in a folder of the test's own under the
 * temp dir, listed at the end of the run.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { readSecret } from '../../common/secrets.js';
import { requirePeer } from './peers.js';
import { startUp, type Running } from './postino.js';

export const CHROMIUM = '/usr/bin/chromium';

export interface Chromium {
  /** Why the browser part is skipped, or undefined. */
  skip: string | undefined;
  browser: Browser | undefined;
  /** Saves the page, whole, as `<n>-<name>.png`. */
  shot(page: Page, name: string): Promise<void>;
  /** Closes the browser and prints the screenshots' paths. */
  close(): Promise<void>;
}

/** `folder` under the temp dir holds this test's screenshots (emptied first). */
export async function launchChromium(folder: string): Promise<Chromium> {
  const dir = path.join(os.tmpdir(), folder);
  const files: string[] = [];
  const skip = requirePeer('chromium', CHROMIUM);
  let browser: Browser | undefined;
  if (!skip) {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'] });
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
  }
  return {
    skip,
    browser,
    async shot(page, name) {
      const file = path.join(dir, `${String(files.length + 1).padStart(2, '0')}-${name}.png`);
      // The whole page in the viewport: Chromium paints a sandboxed (out-of-process) iframe below the fold blank in a fullPage shot.
      const size = page.viewportSize() ?? { width: 1280, height: 900 };
      const height = await page.evaluate(() => document.documentElement.scrollHeight);
      await page.setViewportSize({ width: size.width, height: Math.min(Math.max(height, size.height), 6_000) });
      await page.screenshot({ path: file, fullPage: true });
      await page.setViewportSize(size);
      files.push(file);
    },
    async close() {
      await browser?.close();
      if (files.length) console.log(`# screenshots:\n${files.map((s) => `#   ${s}`).join('\n')}`);
    },
  };
}

/** A browser test's node: `postino up` has this long to listen (three processes on a busy 2-core machine take 20 s or more). */
const UP_START_MS = 60_000;

/** `postino up` with `config` for a browser test, its node key, and Chromium saving screenshots under `screensFolder`. */
export async function startBrowserNode(dataDir: string, config: Record<string, unknown>, screensFolder: string): Promise<{ up: Running; nodeKey: string; chrome: Chromium }> {
  const up = await startUp(dataDir, config, UP_START_MS);
  const nodeKey = readSecret(dataDir, 'api-key')!;
  return { up, nodeKey, chrome: await launchChromium(screensFolder) };
}
