/*
 * dkim.ts (copy step, last) — signs the finished copy (RFC 6376,
 * relaxed/relaxed, rsa-sha256) after every other change. d= is
 * `accounts[].engine.dkim.domain`, else the From domain; s= the selector. The
 * signed fields include List-Unsubscribe and List-Unsubscribe-Post, as RFC 8058
 * 3.1 requires.
 *
 * The body hash is computed in a first pass over the rendered body
 * (dkim-body-hash.ts, streaming), then the DKIM-Signature field is made by
 * nodemailer's signer (`nodemailer/lib/dkim/sign`: header canonicalization and
 * the RSA signature) and the copy is streamed a second time behind it. Nothing
 * is buffered: a 20 MB attachment is read twice from the intake message, never
 * held, and no temporary file is written (nodemailer's DKIM stream would buffer
 * the message or spill it to a cache file to do the same).
 */
import { Readable } from 'node:stream';
import addressparser from 'nodemailer/lib/addressparser';
import sign from 'nodemailer/lib/dkim/sign';
import { splitAddress } from '../../../common/address.js';
import { getHeader } from '../../../common/mime-header.js';
import { RelaxedBodyHash } from '../dkim-body-hash.js';
import { NEXT, type Copy, type CopyStep, type MessageContext } from '../context.js';

/** RFC 6376 5.4.1 recommended fields, plus the RFC 8058 pair. */
const SIGNED_FIELDS =
  'From:Sender:Reply-To:Subject:Date:Message-ID:To:Cc:MIME-Version:Content-Type:Content-Transfer-Encoding:Content-ID:Content-Description:In-Reply-To:References:List-Id:List-Unsubscribe:List-Unsubscribe-Post';

function fromDomain(copy: Copy): string | undefined {
  const from = getHeader(copy.headers, 'from');
  if (!from) return undefined;
  const first = addressparser(from, { flatten: true })[0];
  const parts = first?.address ? splitAddress(first.address) : undefined;
  return parts?.local ? parts.domain.toLowerCase() : undefined;
}

export const dkim: CopyStep = {
  name: 'dkim',
  async run(copy: Copy, msg: MessageContext) {
    const key = msg.settings.dkim;
    const r = copy.rendered;
    if (!key || !r) return NEXT;
    const domainName = key.domain ?? fromDomain(copy);
    if (!domainName) return NEXT; // no From domain to sign for: delivered unsigned
    const hash = new RelaxedBodyHash();
    for await (const chunk of r.body() as AsyncIterable<Buffer>) hash.update(chunk);
    const headers = copy.headers.map((f) => ({ key: f.lower, line: f.raw.toString('latin1').replace(/\r?\n$/, '') }));
    const field = sign(headers, 'sha256', hash.digest(), { domainName, keySelector: key.selector, privateKey: key.privateKey, headerFieldNames: SIGNED_FIELDS });
    if (!field) return NEXT;
    copy.body?.destroy();
    const signature = Buffer.from(field + '\r\n');
    if (copy.shared) copy.shared = { head: Buffer.concat([signature, copy.shared.head]), tailFrom: copy.shared.tailFrom };
    copy.body = Readable.from(
      (async function* () {
        yield signature;
        yield r.header;
        yield* r.body() as AsyncIterable<Buffer>;
      })(),
      // Bytes, not objects: an object-mode Readable reads 16 chunks (up to 4 MB of a large copy) ahead of its reader.
      { objectMode: false },
    );
    return NEXT;
  },
};
