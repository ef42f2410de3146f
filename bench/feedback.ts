/*
 * npm run bench -- feedback
 *
 * Reports/second of engine/feedback readReport() over the fixture corpus in
 * test/fixtures/feedback (DSNs, ARF, auto-replies, malformed), each fixture
 * parsed in turn until 2,000 parses, after a warm-up round; and the time for
 * one 5 MB junk report (the bound: read the first MiB, then give up cleanly).
 * One process, one core: the bounce intake reads reports one at a time.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readReport } from '../engine/feedback/report.js';

const DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '../test/fixtures/feedback');
const PARSES = 2000;

export async function benchFeedback(): Promise<void> {
  const corpus = readdirSync(DIR)
    .filter((f) => f.endsWith('.eml'))
    .sort()
    .map((f) => readFileSync(path.join(DIR, f)));
  for (const raw of corpus) await readReport(raw); // warm-up
  const start = performance.now();
  for (let i = 0; i < PARSES; i++) await readReport(corpus[i % corpus.length]!);
  const seconds = (performance.now() - start) / 1000;
  const bytes = corpus.reduce((n, b) => n + b.length, 0) / corpus.length;
  console.log(`readReport: ${(PARSES / seconds).toFixed(0)} reports/s over ${corpus.length} fixtures (mean ${(bytes / 1024).toFixed(1)} KiB), ${PARSES} parses in ${seconds.toFixed(2)} s`);
  const junk = Buffer.concat([Buffer.from('From: MAILER-DAEMON@x.example\r\nSubject: Returned mail\r\n\r\n'), Buffer.alloc(5 * 1024 * 1024, '{{')]);
  const t = performance.now();
  const r = await readReport(junk);
  console.log(`5 MiB junk report: ${(performance.now() - t).toFixed(0)} ms (${r.kind})`);
}
