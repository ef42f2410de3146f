/*
 * The systemd units in deploy/systemd, checked by systemd itself:
 * `systemd-analyze verify` (syntax, every directive known and its value
 * parsed, the ExecStart binary present) with no warning at all, the hardening
 * the README promises present, and `systemd-analyze security --offline`
 * rating the exposure "OK" (≤ 2.5 of 10). A broken copy must fail the same
 * check, so the check is known to bite.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { requirePeer } from '../helpers/peers.js';
import { ROOT, tempDir } from '../helpers/postino.js';
import { ALLOCATOR_ENV } from '../../app/allocator-env.js';
import { V8_HEAP_FLAGS } from '../../app/heap-flags.js';

const ANALYZE = '/usr/bin/systemd-analyze';
const UNITS = ['postino-hosted.service', 'postino-forwarder.service'].map((u) => path.join(ROOT, 'deploy', 'systemd', u));

function verify(file: string): { status: number | null; output: string } {
  const r = spawnSync(ANALYZE, ['verify', file], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

test('deploy/systemd units pass systemd-analyze verify without a warning and are hardened', (t) => {
  const skip = requirePeer('systemd', ANALYZE);
  if (skip) return t.skip(skip);
  for (const unit of UNITS) {
    const r = verify(unit);
    assert.equal(r.status, 0, r.output);
    assert.equal(r.output, '', `${path.basename(unit)}: ${r.output}`);
    const text = fs.readFileSync(unit, 'utf8');
    for (const directive of ['User=postino', 'ProtectSystem=strict', 'ReadWritePaths=/var/lib/postino', 'Restart=on-failure', 'LimitNOFILE=', 'NoNewPrivileges=yes', 'ExecReload=/bin/kill -HUP $MAINPID'])
      assert.ok(text.includes(directive), `${path.basename(unit)} lacks ${directive}`);
    for (const [k, v] of Object.entries(ALLOCATOR_ENV)) assert.ok(text.includes(`Environment=${k}=${v}\n`), `${path.basename(unit)}: ${k} as postino up sets it (app/allocator-env.ts)`);
    assert.match(text, new RegExp(`^ExecStart=/usr/bin/node ${V8_HEAP_FLAGS.join(' ')} /opt/postino/bin/postino\\.js `, 'm'), `${path.basename(unit)}: node's heap flags as postino up passes them (app/heap-flags.ts)`);
    const sec = spawnSync(ANALYZE, ['security', '--offline=true', unit], { encoding: 'utf8', timeout: 30_000 });
    const score = /Overall exposure level for \S+: ([\d.]+)/.exec(sec.stdout)?.[1];
    assert.ok(score !== undefined, sec.stdout + sec.stderr);
    assert.ok(Number(score) <= 2.5, `${path.basename(unit)} exposure ${score} (want ≤ 2.5)`);
  }
});

test('the same check fails a unit with a typo or a missing binary', (t) => {
  const skip = requirePeer('systemd', ANALYZE);
  if (skip) return t.skip(skip);
  const dir = tempDir('units');
  const good = fs.readFileSync(UNITS[0]!, 'utf8');
  const cases = { 'typo.service': good.replace('ProtectSystem=strict', 'ProtectSystem=strictly'), 'nobinary.service': good.replace('/usr/bin/node ', '/usr/bin/no-such-node ') };
  for (const [name, text] of Object.entries(cases)) {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text);
    const r = verify(file);
    assert.ok(r.status !== 0 || r.output !== '', `${name} passed verify`);
  }
});
