/*
 * dkim.ts (copy step, last) — signs the finished copy (RFC 6376,
 * relaxed/relaxed, rsa-sha256) with nodemailer's DKIM signer, after every
 * other change. d= is `accounts[].engine.dkim.domain`, else the From domain;
 * s= the selector. The signed fields include List-Unsubscribe and
 * List-Unsubscribe-Post, as RFC 8058 3.1 requires. The signer buffers up to
 * DKIM_MEMORY_BYTES of the body, then spills to a temporary file, so a large
 * message does not sit in memory while its body hash is computed.
 */
import os from 'node:os';
import DKIM from 'nodemailer/lib/dkim';
import addressparser from 'nodemailer/lib/addressparser';
import { getHeader } from '../../common/mime-header.js';
import { NEXT, type Copy, type CopyStep, type MessageContext } from '../rewrap-context.js';

/** Bodies above this spill to a file while being signed (nodemailer's default is 10 MB). */
const DKIM_MEMORY_BYTES = 1024 * 1024;
/** RFC 6376 5.4.1 recommended fields, plus the RFC 8058 pair. */
const SIGNED_FIELDS =
  'From:Sender:Reply-To:Subject:Date:Message-ID:To:Cc:MIME-Version:Content-Type:Content-Transfer-Encoding:Content-ID:Content-Description:In-Reply-To:References:List-Id:List-Unsubscribe:List-Unsubscribe-Post';

function fromDomain(copy: Copy): string | undefined {
  const from = getHeader(copy.headers, 'from');
  if (!from) return undefined;
  const first = addressparser(from, { flatten: true })[0];
  const at = first?.address?.lastIndexOf('@') ?? -1;
  return at > 0 ? first!.address!.slice(at + 1).toLowerCase() : undefined;
}

export const dkim: CopyStep = {
  name: 'dkim',
  run(copy: Copy, msg: MessageContext) {
    const key = msg.settings.dkim;
    if (!key || !copy.body) return NEXT;
    const domainName = key.domain ?? fromDomain(copy);
    if (!domainName) return NEXT; // nothing to sign for; delivered unsigned
    const signer = new DKIM({ domainName, keySelector: key.selector, privateKey: key.privateKey, headerFieldNames: SIGNED_FIELDS, cacheDir: os.tmpdir(), cacheTreshold: DKIM_MEMORY_BYTES });
    copy.body = signer.sign(copy.body);
    return NEXT;
  },
};
