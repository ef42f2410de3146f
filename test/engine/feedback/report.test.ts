import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { readReport, type FeedbackReport } from '../../../engine/feedback/report.js';

const DIR = path.join(import.meta.dirname, '../../fixtures/feedback');

interface Expected {
  kind: FeedbackReport['kind'];
  class?: string;
  status?: string;
  recipient?: string;
  recipients?: number;
  messageId?: string;
  returnPath?: string;
  feedbackType?: string;
}

const expected = JSON.parse(readFileSync(path.join(DIR, 'expected.json'), 'utf8')) as Record<string, Expected>;
const files = readdirSync(DIR).filter((f) => f.endsWith('.eml')).sort();

/** The fields expected.json names, read from a report. */
function summary(r: FeedbackReport, want: Expected): Record<string, unknown> {
  const got: Record<string, unknown> = { kind: r.kind };
  if (r.kind === 'bounce') {
    const first = r.recipients[0];
    Object.assign(got, { class: first?.class, status: first?.status, recipient: first?.recipient, recipients: r.recipients.length, messageId: r.refs.messageId, returnPath: r.refs.returnPath });
  } else if (r.kind === 'complaint') {
    Object.assign(got, { feedbackType: r.feedbackType, recipient: r.refs.recipient, messageId: r.refs.messageId, returnPath: r.refs.returnPath });
  }
  return Object.fromEntries(Object.keys(want).map((k) => [k, got[k]]));
}

test('every fixture has an expected classification, and every expectation a fixture', () => {
  assert.deepEqual(Object.keys(expected).sort(), files);
});

for (const file of files) {
  test(`fixture ${file}`, async () => {
    const want = expected[file];
    assert.ok(want, `${file} is missing from expected.json`);
    const r = await readReport(readFileSync(path.join(DIR, file)));
    assert.deepEqual(summary(r, want), want, JSON.stringify(r, null, 1));
  });
}
