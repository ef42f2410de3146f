/*
 * tls-ciphers.ts — the cipher order of every TLS session Postino takes part in:
 * Node's own list with TLS_AES_128_GCM_SHA256 moved first.
 *
 * Both sides use it. Our SMTP servers (smtp-intake.ts: the listener, and the
 * forwarder when it offers STARTTLS) choose by their own order, as smtp-server
 * sets honorCipherOrder; our SMTP client (smtp-client.ts: the forwarder's relay
 * to the listener, the engine's delivery) offers it in that order, for servers
 * that follow the client's (OpenSSL's default, Postfix's with
 * tls_preempt_cipherlist = no). A TLS 1.3 session then runs AES-128-GCM rather
 * than AES-256-GCM, as Go's TLS stack chooses on AES hardware and Mozilla's
 * "intermediate" configuration lists first: both are TLS 1.3 AEAD suites, and
 * AES-128-GCM is its mandatory one (RFC 8446 9.1). Every other suite stays, in
 * Node's order, so a peer that allows only the others still agrees.
 *
 * Why (issue #17): the forwarder→listener hop encrypts and decrypts every byte
 * of every message. On this project's 2-core VM (2026-12-03) `openssl speed
 * -evp` on 16 KiB blocks, TLS's record size, gave AES-128-GCM 3.07-3.39 GB/s
 * against 1.88-1.91 for AES-256-GCM: ~0.24 ms less CPU a MiB on each side of
 * the hop (an earlier VM ran both at ~1 GB/s through node:crypto; the order
 * costs nothing where they are equal).
 */
import tls from 'node:tls';

const PREFERRED_FIRST = 'TLS_AES_128_GCM_SHA256';

export const TLS_CIPHERS = [PREFERRED_FIRST, ...tls.DEFAULT_CIPHERS.split(':').filter((c) => c !== PREFERRED_FIRST)].join(':');
