/* The dashboard's template escapes every value unless it is markup of its own. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { html, trusted, url } from '../../../engine/dashboard/html.js';

test('interpolated text is escaped in text and attributes; nested templates and trusted() pass through', () => {
  const evil = `<script>alert("x")</script>' onmouseover='y`;
  const out = html`<p title="${evil}">${evil}</p>${html`<b>${'&'}</b>`}${trusted('<i>ok</i>')}`.value;
  assert.equal(out, `<p title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39; onmouseover=&#39;y">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39; onmouseover=&#39;y</p><b>&amp;</b><i>ok</i>`);
});

test('arrays render item by item (each escaped); null, undefined and booleans render as nothing; numbers as text', () => {
  assert.equal(html`${['<a>', html`<b></b>`]}|${null}|${undefined}|${false}|${0}|${true}`.value, '&lt;a&gt;<b></b>||||0|');
});

test('url() percent-encodes values and drops empty ones', () => {
  assert.equal(url('/messages', { recipient: 'a+b@x.test', sender: '', after: 5, q: undefined }), '/messages?recipient=a%2Bb%40x.test&after=5');
  assert.equal(url('/x'), '/x');
});
