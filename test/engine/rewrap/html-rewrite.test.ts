import assert from 'node:assert/strict';
import { test } from 'node:test';
import { markUrlTags, rewriteHtml, URL_START_MARK, URL_TAG_MARK } from '../../../engine/rewrap/html-rewrite.js';
import { maxGap } from '../../helpers/hostile.js';
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

test('one text run longer than several writes comes back whole (its location is extended token by token)', async () => {
  // ~380 KB of text between two tags: character tokens across six 64 Ki writes and the tokenizer's dropped buffer.
  const html = '<p>' + 'word &amp; more, . .. \r\n'.repeat(16_000) + '</p>';
  assert.equal(await rewriteHtml(html, { beforeBodyEnd: '<i>end</i>' }), html + '<i>end</i>');
});

test('markUrlTags marks the tags of URL attributes only: START at the start of the value', async () => {
  const out = await markUrlTags('<a href="https://x.test/{{id}}" title="{{t}}"><img src="{{img}}"></a><p>{{body}}</p>');
  assert.equal(out, `<a href="https://x.test/${URL_TAG_MARK}{{id}}" title="{{t}}"><img src="${URL_START_MARK}{{img}}"></a><p>{{body}}</p>`);
});

/** Burns `ms` of CPU: an edit as slow as a loaded machine makes the real ones. */
function burn(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

test('dense markup is tokenized in slices: the thread is let go within one 64 Ki write, and the output is byte-identical across the pauses', async () => {
  // 2,000 links in 62,000 characters (one write): each edit costs 1 ms, 2 s of work; the feed before wrote 16 Ki (~530 links) a turn.
  const dense = '<p>' + '<a href="http://x.test/">l</a> '.repeat(2_000) + '</p>';
  let result = '';
  const holdMs = await maxGap(async () => {
    result = await rewriteHtml(dense, {
      link: () => {
        burn(1);
        return undefined;
      },
    });
  });
  assert.equal(result, dense);
  // A slice is 5 ms and one token's edit 1 ms; 200 ms leaves room for a loaded 2-core machine (tests run side by side),
  // where one write of the feed held the thread ~500 ms before.
  assert.ok(holdMs < 200, `the thread was held ${holdMs.toFixed(1)} ms at once`);

  // Pauses after text, comments and entities as well as tags: the document still comes back whole.
  const { html, links } = bigHtml(5, 200_000);
  let seen = 0;
  const out = await rewriteHtml(html, {
    link: () => {
      seen++;
      burn(0.05);
      return undefined;
    },
    afterBodyStart: '<div>head</div>',
    beforeBodyEnd: '<div>foot</div>',
  });
  assert.equal(out, html.replace('<body>', '<body><div>head</div>').replace('</body>', '<div>foot</div></body>'));
  assert.equal(seen, links);
});
