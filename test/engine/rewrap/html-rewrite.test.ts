import assert from 'node:assert/strict';
import { test } from 'node:test';
import { markUrlTags, rewriteHtml, URL_START_MARK, URL_TAG_MARK } from '../../../engine/rewrap/html-rewrite.js';
import { seededRandom } from '../../helpers/random.js';

/** A document larger than several parse slices, with tags, entities, comments and non-ASCII cut at random places. */
function bigHtml(seed: number, size: number): { html: string; links: number } {
  const rnd = seededRandom(seed);
  const pieces = ['<p class="x">', '</p>', 'text ', 'é€😀', '&amp;', '<!-- c -->', '<a href="https://x.test/{{id}}?a=1&amp;b=2">l</a>', '<img src="{{img}}">', '\r\n'];
  let html = '<html><head><title>t</title></head><body>';
  let links = 0;
  while (html.length < size) {
    const p = pieces[Math.floor(rnd() * pieces.length)]!;
    if (p.startsWith('<a ')) links++;
    html += p;
  }
  return { html: html + '</body></html>', links };
}

test('a document of several parse slices comes back byte-identical when nothing is edited, and every link is seen once', async () => {
  const { html, links } = bigHtml(3, 300_000);
  let seen = 0;
  const out = await rewriteHtml(html, {
    link: () => {
      seen++;
      return undefined;
    },
  });
  assert.equal(out, html);
  assert.equal(seen, links);
});

test('markUrlTags marks the tags of URL attributes only: START at the start of the value', async () => {
  const out = await markUrlTags('<a href="https://x.test/{{id}}" title="{{t}}"><img src="{{img}}"></a><p>{{body}}</p>');
  assert.equal(out, `<a href="https://x.test/${URL_TAG_MARK}{{id}}" title="{{t}}"><img src="${URL_START_MARK}{{img}}"></a><p>{{body}}</p>`);
});
