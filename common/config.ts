/*
 * config.ts — the one configuration schema of every Postino process.
 *
 * A process reads one JSON file (`--config F`); every key has a default, so an
 * empty file (or none) is a valid configuration. Validation reports every
 * problem at once, each with its key path (`forwarder.smtp.port: …`), and the
 * CLI exits with status 2 before anything binds. The validated object is
 * deep-frozen and passed down; nothing else reads files or the environment for
 * configuration.
 *
 * Side effects: `loadConfig` reads the file and stats the TLS/CA files it names.
 *
 * Sections: `log`, `accounts`, `forwarder`, `listener`, `engine`, `feedback`, `delivery`, `http`, `sink`, `dashboard`, `events`, `storage`.
 * Each process uses the sections of its own stage; `postino up` uses them all.
 * Defaults are the ports of DESIGN.md, all on loopback.
 */
import fs from 'node:fs';
import { z } from 'zod';
import { parseCidr } from './cidr.js';
import { redactUrl, redactUrlsIn } from './redact.js';
import { API_KEY_ID } from './api-keys.js';

const MB = 1024 * 1024;
/** RFC 5321 4.5.3.1.8 asks for at least 100 recipients; 1000 fits a mailing to a small list. */
const DEFAULT_MAX_RECIPIENTS = 1000;
/** Most providers cap a message at 25 MB (Gmail, Outlook); larger mail would bounce downstream anyway. */
const DEFAULT_MAX_SIZE = 25 * MB;

const port = z.number().int().min(0, 'a port is 0..65535').max(65535, 'a port is 0..65535');
const host = z.string().min(1);
const cidr = z.string().superRefine((v, ctx) => {
  const r = parseCidr(v);
  if (typeof r === 'string') ctx.addIssue({ code: 'custom', message: r });
});
/** A file the process must read at start: checked here so the report names the key. */
const existingFile = z.string().superRefine((v, ctx) => {
  if (!fs.existsSync(v)) ctx.addIssue({ code: 'custom', message: `file "${v}" does not exist` });
  else if (!fs.statSync(v).isFile()) ctx.addIssue({ code: 'custom', message: `"${v}" is not a file` });
});
const positiveInt = z.number().int().positive();
const seconds = z.number().nonnegative();
/** X-Postino-Stream: transactional mail goes ahead of bulk and skips list-scoped unsubscribes. */
export const STREAMS = ['transactional', 'bulk'] as const;
export type Stream = (typeof STREAMS)[number];

/**
 * Probes of a down relay (relay-health.ts): seconds before the 1st, 2nd, …
 * probe, the last repeating. A probe is one connection (EHLO, STARTTLS, QUIT),
 * cheaper than one message, so it starts at 1 s: a listener restarted in a few
 * seconds is found within a second or two of its return. It stays at 5 s for
 * the first half-minute because a restart that is slow to come up (a loaded
 * host, a long start) still ends inside it, and a 10 s gap there made a 3 s
 * outage cost 13 s. It then grows so that a long outage costs the dead relay 4
 * connections a minute per sender, and stops at 15 s because that bounds how
 * long a recovered relay waits unused (the spool drains within seconds of its
 * return, not minutes); the maximum is reached 31 s into an outage.
 */
const DEFAULT_PROBE_SCHEDULE_SECONDS = [1, 2, 3, 5, 5, 5, 10, 15];
const probeSchedule = z.array(z.number().positive()).min(1).default(DEFAULT_PROBE_SCHEDULE_SECONDS);
const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/** `smtp://host:port` (STARTTLS when offered/required) or `smtps://host:port` (implicit TLS). */
const smtpUrl = z.string().superRefine((raw, ctx) => {
  // A problem report is printed and logged: it names the URL without its password.
  const v = redactUrl(raw);
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    ctx.addIssue({ code: 'custom', message: `"${v}" is not a URL like smtp://127.0.0.1:2587` });
    return;
  }
  if (u.protocol !== 'smtp:' && u.protocol !== 'smtps:')
    ctx.addIssue({ code: 'custom', message: `"${v}" must use smtp:// or smtps://` });
  if (u.port !== '' && Number(u.port) > 65535) ctx.addIssue({ code: 'custom', message: `"${v}" has a port above 65535` });
});

const tlsFiles = z
  .object({
    /** PEM certificate chain; null = the development pair under <data>/secrets/. */
    certFile: existingFile.nullable().default(null),
    keyFile: existingFile.nullable().default(null),
  })
  .strict();

const smtpIntake = {
  host: host.default('127.0.0.1'),
  /** Largest message accepted (bytes); advertised as SIZE (RFC 1870). */
  maxSize: positiveInt.default(DEFAULT_MAX_SIZE),
  maxRecipients: positiveInt.default(DEFAULT_MAX_RECIPIENTS),
  /**
   * Milliseconds before the 220 greeting for clients outside `trustedNetworks`:
   * an early talker (a spam bot) is refused. Clients we trust get no delay,
   * which is what lets one-message-per-connection apps exceed ~10 msg/s.
   */
  greetingDelayMs: z.number().int().min(0).max(30_000).default(100),
  trustedNetworks: z.array(cidr).default(['127.0.0.0/8', '::1/128']),
  /** Seconds an idle SMTP session is kept (RFC 5321 4.5.3.2.7 suggests 5 minutes). */
  idleTimeoutSeconds: seconds.default(300),
};

const forwarder = z
  .object({
    smtp: z
      .object({
        ...smtpIntake,
        port: port.default(2525),
        /** Only these networks may submit; never an open relay (DESIGN guarantee 2). */
        allowNetworks: z.array(cidr).default(['127.0.0.0/8', '::1/128']),
        /**
         * AUTH PLAIN/LOGIN for apps that insist on logging in. No users = AUTH not
         * offered. Passwords come from the named environment variables, never the file.
         */
        auth: z
          .object({
            users: z.array(z.object({ username: z.string().min(1), passwordEnv: z.string().min(1) }).strict()).default([]),
            /** Refuse MAIL FROM before AUTH; off by default because allowNetworks is the perimeter. */
            required: z.boolean().default(false),
          })
          .strict()
          .prefault({}),
        /**
         * TLS pair offered to apps with STARTTLS (RFC 3207); null = no STARTTLS, except under
         * `postino up`, which fills in the development pair of <data>/secrets.
         */
        tls: tlsFiles.prefault({}),
        /** `530 5.7.0` to MAIL before STARTTLS (needs `tls`); off because apps on a LAN often cannot do TLS. */
        requireTls: z.boolean().default(false),
      })
      .strict()
      .superRefine((s, ctx) => {
        // Fail closed: a setting that asks for protection it cannot give is an error, not a silent no-op.
        if (s.auth.required && s.auth.users.length === 0)
          ctx.addIssue({ code: 'custom', path: ['auth', 'required'], message: 'AUTH is required but forwarder.smtp.auth.users is empty: nobody could send' });
        if ((s.tls.certFile === null) !== (s.tls.keyFile === null))
          ctx.addIssue({ code: 'custom', path: ['tls', s.tls.certFile === null ? 'certFile' : 'keyFile'], message: 'certFile and keyFile go together' });
        if (s.requireTls && (s.tls.certFile === null || s.tls.keyFile === null))
          ctx.addIssue({ code: 'custom', path: ['requireTls'], message: 'TLS is required but forwarder.smtp.tls names no certFile and keyFile' });
      })
      .prefault({}),
    admin: z
      .object({
        host: host.default('127.0.0.1'),
        port: port.default(8025),
        /** Name of an environment variable holding the bearer token; null = <data>/secrets/admin-token. */
        tokenEnv: z.string().nullable().default(null),
      })
      .strict()
      .prefault({}),
    relay: z
      .object({
        /** Hosted listeners, tried in order (failover). */
        urls: z.array(smtpUrl).min(1).default(['smtp://127.0.0.1:2587']),
        /** Refuse to relay without STARTTLS: the hop crosses the internet. */
        requireTls: z.boolean().default(true),
        /** Verify the listener's certificate; only a lab setup turns this off. */
        verifyCertificate: z.boolean().default(true),
        /** Extra CA (PEM) to trust, e.g. the dev CA of `postino dev-cert`; null = system CAs. */
        caFile: existingFile.nullable().default(null),
        /** Server name expected in the listener certificate; null = the URL's host. */
        serverName: z.string().nullable().default(null),
        /**
         * 16: the listener answers each message after a group-committed fsync, so one
         * connection carries one message per commit; with 4 (the old default) the
         * pipeline waited on commits with CPU idle (2 KB end to end 300/s vs 410-495/s
         * at 16, issue #17). Below the listener's maxConnectionsPerIp of 20, so a
         * reconnect overlap still fits; Postfix's default destination concurrency is 20.
         */
        maxConnections: positiveInt.default(16),
        messagesPerConnection: positiveInt.default(100),
        /** Seconds to wait for any single SMTP step upstream before treating it as a failure. */
        timeoutSeconds: seconds.default(60),
        /**
         * Peak leveling: messages started per second (token bucket, burst = a tenth of
         * a second's worth); 0 = no cap. Excess mail waits in the spool, intake is not slowed.
         */
        maxMessagesPerSecond: z.number().nonnegative().default(0),
        /**
         * Peak leveling without a cap: while apps send faster than the forwarder's event
         * loop can both take and relay, the relay steps back to a trickle (≤100 a second) and
         * the spool takes the peak at intake speed (forwarder/intake-first.ts), as long as
         * a new message waits no longer than this for it; past it the relay runs at full
         * concurrency again. 10 s: a burst of tens of thousands of messages (the forwarder
         * takes ~5,000 2 KB messages a second on 2 cores), far below the first retry
         * (300 s). 0 = the relay never steps back, which `postino up` sets
         * (app/supervisor.ts): there the hosted node shares the cores, holding the relay
         * back idles it during the burst, and end to end fell below Postfix at 100 KB
         * (1.07-1.10 → 0.78) with the p50 latency at ~6.5 s instead of ~0.5 (issue #17,
         * docs/performance-log.md). The forwarder appliance, next to the apps and away
         * from the hosted side, keeps it.
         */
        yieldToIntakeSeconds: z.number().nonnegative().default(10),
        /**
         * A listener that cannot be reached is marked down and probed on this schedule
         * (seconds, the last repeats) while the spool holds; no message is charged a retry for it.
         */
        probeScheduleSeconds: probeSchedule,
      })
      .strict()
      .prefault({}),
    /** Our name in DSNs (Reporting-MTA, MAILER-DAEMON@…); null = the machine's host name. */
    hostname: z.string().min(1).nullable().default(null),
    retry: z
      .object({
        /** Seconds to wait before each retry; the last entry repeats. Postfix: 5 min doubling to 1 h. */
        scheduleSeconds: z.array(seconds).min(1).default([300, 600, 1200, 2400, 3600]),
        /** Give up (bounce) after this many seconds in the spool; Postfix's maximal_queue_lifetime is 5 days. */
        maxAgeSeconds: seconds.default(5 * 24 * 3600),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .prefault({});

/*
 * The hosted listener. Who may connect is decided per account (`accounts[].networks`);
 * these keys are the node-wide limits that keep it cheap to hold under attack.
 */
const listener = z
  .object({
    ...smtpIntake,
    port: port.default(2587),
    tls: tlsFiles.prefault({}),
    /**
     * How long accepted X-Postino-Spool-Id values are remembered, so a forwarder's
     * retry after a lost reply is answered 250 without a second copy. Longer than
     * the forwarder's 5-day retry limit.
     */
    spoolIdTtlSeconds: seconds.default(7 * 24 * 3600),
    /** Concurrent SMTP sessions on this node; above it `421 4.7.0` before any parser exists. */
    maxConnections: positiveInt.default(200),
    /** Concurrent sessions from one client IP (a forwarder opens `relay.maxConnections`, default 16). */
    maxConnectionsPerIp: positiveInt.default(20),
    /** Total length of one session, idle or not; then `421 4.4.2`. Postfix has no such limit, but a
     * forwarder renews its connection every 100 messages, so 10 minutes only cuts off stuck peers. */
    sessionTimeoutSeconds: seconds.default(600),
    /** Error replies (5xx to commands) before `421 4.7.0` and close; Postfix's smtpd_hard_error_limit is 20. */
    maxErrors: positiveInt.default(10),
    /** Failed AUTH attempts per client IP per `authFailureWindowSeconds`; past it AUTH gets `454 4.7.0`. */
    maxAuthFailures: positiveInt.default(5),
    authFailureWindowSeconds: seconds.default(300),
    /**
     * Accept an HAProxy PROXY protocol v1 header from these load-balancer addresses (CIDR),
     * so the allowlist, caps and records see the real client IP. Empty = no PROXY protocol.
     */
    proxyProtocolFrom: z.array(cidr).default([]),
    /**
     * The widest network the accounts API adds to an account without `force` (CLI --force):
     * an IPv4 /16 is 65,536 addresses, an IPv6 /32 a whole provider's allocation. 0.0.0.0/0
     * and ::/0 are always refused without force; an account key can never force. The config
     * file itself is not checked (it is the operator's).
     */
    minAccountPrefix: z
      .object({ ipv4: z.number().int().min(0).max(32).default(16), ipv6: z.number().int().min(0).max(128).default(32) })
      .strict()
      .prefault({}),
  })
  .strict()
  .prefault({});

/** `scrypt$N$r$p$<salt b64>$<hash b64>`, as printed by `postino hash-password`. */
const scryptHash = z.string().regex(/^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/, 'a password hash looks like scrypt$16384$8$1$<salt>$<hash> (postino hash-password)');
const domainName = z.string().regex(/^(\*\.)?[a-z0-9.-]+$/i, 'a domain like example.org or *.example.org');

/** Per-account listener policy (`accounts[].listener`). */
const accountListener = z
  .object({
    /** SMTP AUTH users (PLAIN, LOGIN). With any listed, a session must authenticate before MAIL. */
    users: z.array(z.object({ username: z.string().min(1), passwordHash: scryptHash }).strict()).default([]),
    /** Domains this account may use in MAIL FROM (`*.example.org` includes subdomains); empty = any. */
    senderDomains: z.array(domainName).default([]),
    /** `530 5.7.0` to MAIL before STARTTLS: the forwarder→listener hop crosses the internet. */
    requireTls: z.boolean().default(true),
    /** Allow AUTH before STARTTLS (credentials in clear): only for a lab. */
    allowInsecureAuth: z.boolean().default(false),
    /** Messages accepted per UTC hour / UTC day; 0 = unlimited. Over it `452 4.5.3` (the forwarder retries). */
    messagesPerHour: z.number().int().min(0).default(0),
    messagesPerDay: z.number().int().min(0).default(0),
    /** What the two quotas count: messages, or recipients (a message to 50 is 50). */
    quotaUnit: z.enum(['messages', 'recipients']).default('messages'),
    /** Recipients per message for this account (the node-wide `listener.maxRecipients` still applies). */
    maxRecipients: positiveInt.default(DEFAULT_MAX_RECIPIENTS),
  })
  .strict();

/**
 * MIME structure the rewrap reads (engine.mimeNestingLimit, engine.mimeMaxParts).
 * 100 levels is Postfix's mime_nesting_limit: real mail nests 3 or 4 deep, and
 * an unbounded depth let 20,000 nested parts exhaust the stack. 10,000 parts is
 * far beyond any real message (a newsletter with images has tens) while a
 * structure that size is still read in a few milliseconds.
 */
export const DEFAULT_MIME_NESTING_LIMIT = 100;
export const DEFAULT_MIME_MAX_PARTS = 10_000;

const engine = z
  .object({
    /** Host name written into the Received: header the engine adds. */
    hostname: host.default('postino.localhost'),
    /**
     * Messages rewrapped concurrently. 16: each rewrap waits on LevelDB commits, so
     * more in flight means fewer, larger batches and less idle CPU (with the
     * forwarder's 16 connections, 2 KB end to end 300 → 410-495/s, issue #17). The
     * rewrap streams bodies, so memory does not grow with the message size.
     */
    concurrency: positiveInt.default(16),
    /**
     * Base URL of this node's HTTP side as recipients reach it (unsubscribe and
     * tracking links); null = http://<http.host>:<http.port>. An account may override it.
     */
    publicUrl: z.url().nullable().default(null),
    /**
     * Domain of the VERP return paths (bounces come back to it); null = the
     * customer's envelope sender is kept (no VERP) unless the account sets one.
     */
    bounceDomain: host.nullable().default(null),
    /** Local part before the `+token` of VERP return paths and of the unsubscribe mailto. */
    bounceLocalPart: z.string().regex(/^[A-Za-z0-9._-]{1,20}$/).default('bounces'),
    /** X-Postino-* headers left in delivered copies (all others are removed). */
    passthroughHeaders: z.array(z.string().regex(/^[A-Za-z0-9-]+$/)).default([]),
    /**
     * Open and click links stop working this many days after the copy was made; null = never.
     * Unsubscribe links never expire (they must work for as long as the message exists).
     */
    trackingLinkTtlDays: positiveInt.nullable().default(null),
    /**
     * Failed attempts (the handler threw: a poison message) after which a message of the
     * intake, delivery or feedback queue moves to the failed records (common/dead-letter.ts).
     */
    maxAttempts: positiveInt.default(5),
    /** Wait before the next attempt after the 1st, 2nd, … failed one; the last entry repeats. */
    crashRetrySeconds: z.array(seconds).min(1).default([10, 60, 300, 900]),
    /** A send time (X-Postino-Send-At, X-SMTPAPI send_at, …) further ahead is refused with 550 5.6.0. */
    maxScheduleDays: positiveInt.default(30),
    /** Multipart levels the rewrap reads (Postfix's mime_nesting_limit); a deeper message is rejected. */
    mimeNestingLimit: positiveInt.default(DEFAULT_MIME_NESTING_LIMIT),
    /** MIME parts per message the rewrap reads; a message with more is rejected. */
    mimeMaxParts: positiveInt.default(DEFAULT_MIME_MAX_PARTS),
    /**
     * A copy still deferred this long after it was queued gets one "delayed" DSN to its
     * sender when NOTIFY asks for DELAY or was not given (engine/delivery/dsn-notices.ts);
     * 0 = never. Postfix's delay_warning_time is off by default; sendmail warns after 4 h,
     * which is what a sender who relays through a forwarder is used to.
     */
    dsnDelayWarningSeconds: seconds.default(4 * 3600),
    /**
     * The message archive (engine/archive/): each accepted message's source as the listener
     * took it, kept per account for `retentionDays`, shown and downloadable on the dashboard's
     * message page. Off by default: it keeps every customer's mail content on this node's disk
     * (privacy, and disk roughly = a week of traffic); `postino up` turns it on (a dev node).
     * An account may override both (accounts[].archive).
     */
    archive: z
      .object({
        enabled: z.boolean().default(false),
        /** Whole UTC days kept after the day a message arrived (a support desk asks within the week). */
        retentionDays: positiveInt.default(7),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .prefault({});

/**
 * What comes back (engine/feedback/): the bounce and complaint intake, and how
 * bounces turn into suppressions. The intake is reached by anyone (its MX is
 * the bounce domain), so it has caps of its own and the listener's allowlist
 * does not apply.
 */
const feedback = z
  .object({
    /** Bounce/ARF intake; null port = not started (a node that only relays). */
    host: host.default('127.0.0.1'),
    port: port.nullable().default(2526),
    /** DSNs quote the original: allow a 25 MB original plus the report around it. */
    maxSize: positiveInt.default(DEFAULT_MAX_SIZE + MB),
    /** Sessions at once, and per client IP: bounces arrive in bursts from a few big providers. */
    maxConnections: positiveInt.default(200),
    maxConnectionsPerIp: positiveInt.default(20),
    /** Local part (at the bounce domain) where feedback-loop providers send ARF complaints. */
    complaintLocalPart: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/).default('fbl'),
    /** Local part (at the bounce domain) of the List-Unsubscribe mailto. */
    unsubscribeLocalPart: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/).default('unsubscribe'),
    /** An address with this many soft bounces within `softBounceDays` is suppressed like a hard bounce (mailbox full for weeks is gone). */
    softBounceLimit: positiveInt.default(5),
    softBounceDays: positiveInt.default(14),
    /**
     * How long the engine remembers each copy (queue id → account, recipient, Message-ID, tag)
     * to attribute late bounces and complaints; feedback-loop reports can come weeks later.
     */
    copyRetentionDays: positiveInt.default(60),
    /** A click this soon after the copy left is a link scanner's (`machine: true`), whatever its user agent says. */
    scannerClickSeconds: z.number().int().min(0).default(10),
  })
  .strict()
  .prefault({});

/**
 * Rewrap settings of one account (`accounts[].engine`). The defaults change
 * no message body: tracking and footer are opt-in, and without `bounceDomain`
 * (here or in `engine`) the envelope sender is kept.
 */
const accountEngine = z
  .object({
    /** Overrides `engine.publicUrl` for this account's links. */
    publicUrl: z.url().nullable().default(null),
    /** Overrides `engine.bounceDomain`. */
    bounceDomain: host.nullable().default(null),
    /** Stream of messages without X-Postino-Stream; transactional mail skips unsubscribe-scope suppression. */
    stream: z.enum(STREAMS).default('transactional'),
    /** List-Unsubscribe + List-Unsubscribe-Post (RFC 8058) on every copy; bulk mail always gets it. */
    unsubscribe: z.boolean().default(true),
    /**
     * A message that carries its own List-Unsubscribe: `keep` it (ours is not added), `replace`
     * it with ours, or `add` ours beside it. Keep is the default: a customer who runs their own
     * unsubscribe page must not lose it.
     */
    existingListUnsubscribe: z.enum(['keep', 'replace', 'add']).default('keep'),
    /**
     * People who act on bounces and complaints (the customer's IT staff, not a no-reply sender):
     * a readable summary of hard bounces, blocks and complaints, sent through our own delivery
     * with Auto-Submitted: auto-generated. `digestMinutes` 0 = within seconds of the event
     * (a burst becomes one mail), else one digest every N minutes.
     */
    notify: z
      .object({
        addresses: z.array(z.email()).default([]),
        digestMinutes: z.number().int().min(0).max(1440).default(0),
      })
      .strict()
      .prefault({}),
    /** Tracking without X-Postino-Track: none by default (it rewrites the HTML). */
    track: z
      .object({
        opens: z.boolean().default(false),
        clicks: z.boolean().default(false),
        /** Also rewrite http(s) URLs in plain-text parts when clicks are tracked (off: text stays as written). */
        textLinks: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    /** Header/footer templates (merge tags allowed, `{{unsubscribe_url}}` included); `enabled` is the default of X-Postino-Footer. */
    footer: z
      .object({
        enabled: z.boolean().default(false),
        text: z.string().nullable().default(null),
        html: z.string().nullable().default(null),
        headerText: z.string().nullable().default(null),
        headerHtml: z.string().nullable().default(null),
      })
      .strict()
      .prefault({}),
    /** DKIM signing (RFC 6376) with the key of `postino dkim keygen`; off while keyFile is null. */
    dkim: z
      .object({
        /** Signing domain (d=); null = the domain of the From address. */
        domain: host.nullable().default(null),
        selector: z.string().regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/).default('postino'),
        keyFile: existingFile.nullable().default(null),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .prefault({});

/** One MTA-cluster relay: a plain URL, or an object with a weight and TLS policy. */
const relay = z.union([
  smtpUrl.transform((url) => ({ url, weight: 1, requireTls: false })),
  z
    .object({
      /** smtp://[user:pass@]host:port (STARTTLS when offered; AUTH when user is given) or smtps:// (implicit TLS). */
      url: smtpUrl,
      /** Share of the traffic relative to the other relays' weights. */
      weight: positiveInt.default(1),
      /** Refuse to send unless STARTTLS succeeds (ignored for smtps://). */
      requireTls: z.boolean().default(false),
    })
    .strict(),
]);

/** Per-destination queue parameters (KumoMTA style); 0 messagesPerSecond = unlimited. */
const shapingParams = {
  /** Concurrent SMTP transactions for one destination domain. */
  maxConnections: positiveInt,
  /** Token-bucket rate for one destination domain; 0 = no limit. */
  messagesPerSecond: z.number().nonnegative(),
  /** Messages sent over one connection before it is renewed. */
  messagesPerConnection: positiveInt,
};

/** A sending IP: nodemailer's localAddress, chosen by weight, optionally for one stream only. */
const sourceAddress = z
  .object({
    address: z.string().superRefine((v, ctx) => {
      const r = parseCidr(v);
      if (typeof r === 'string' || v.includes('/')) ctx.addIssue({ code: 'custom', message: `"${v}" is not an IP address` });
    }),
    weight: positiveInt.default(1),
    /** Which streams may use it; default both. */
    streams: z.array(z.enum(STREAMS)).min(1).default([...STREAMS]),
  })
  .strict();

const delivery = z
  .object({
    /** MTA cluster relays (weighted); the default is the built-in capture sink. */
    relays: z.array(relay).min(1).default([{ url: 'smtp://127.0.0.1:2600', weight: 1, requireTls: false }]),
    /**
     * A relay that fails to connect is marked down (the others take its traffic; with
     * all down the queue holds, no copy charged a try) and probed on this schedule.
     */
    relayProbeScheduleSeconds: probeSchedule,
    /** Our own sink and a local Postfix offer no certificate worth verifying. */
    verifyCertificate: z.boolean().default(false),
    /** Pooled connections per relay and sending IP (the default-shaped pool); Postfix's default_destination_concurrency_limit is 20. */
    maxConnections: positiveInt.default(20),
    messagesPerConnection: positiveInt.default(100),
    timeoutSeconds: seconds.default(60),
    /** Seconds before each retry after a 4xx; the last entry repeats (1, 5, 15, 30, 60 min, then hourly). */
    retryScheduleSeconds: z.array(seconds).min(1).default([60, 300, 900, 1800, 3600]),
    /** A copy still undelivered after this long gets an `expired` event (3 days). */
    maxAgeSeconds: seconds.default(3 * 24 * 3600),
    /** Per recipient domain: `default`, and overrides by domain name (e.g. "gmail.com"). */
    shaping: z
      .object({
        default: z
          .object({ maxConnections: shapingParams.maxConnections.default(20), messagesPerSecond: shapingParams.messagesPerSecond.default(0), messagesPerConnection: shapingParams.messagesPerConnection.default(100) })
          .strict()
          .prefault({}),
        domains: z.record(z.string(), z.object(shapingParams).partial().strict()).default({}),
      })
      .strict()
      .prefault({}),
    /**
     * Bounded in-memory ready lanes, one per domain: at most this many copies
     * leased from the durable queue in total, and per limited domain at most
     * `laneLookaheadSeconds` of its rate (min 20); the rest waits on disk.
     */
    readyMax: positiveInt.default(20_000),
    laneMax: positiveInt.default(2_000),
    laneLookaheadSeconds: seconds.default(5),
    /** Seconds between re-checks of copies of a paused account. */
    pausedRecheckSeconds: seconds.default(5),
    /**
     * Provider back-pressure (KumoMTA style): a 4xx reply whose text matches
     * `match` (case-insensitive regular expression) suspends the destination
     * domain, or slows it to `messagesPerSecond`, for `seconds`.
     */
    backPressure: z
      .array(
        z
          .object({
            name: z.string().min(1),
            match: z.string().superRefine((v, ctx) => {
              try {
                new RegExp(v, 'i');
              } catch (e) {
                ctx.addIssue({ code: 'custom', message: `not a regular expression: ${(e as Error).message}` });
              }
            }),
            action: z.enum(['suspend', 'slow']),
            seconds: seconds,
            messagesPerSecond: z.number().positive().default(1),
          })
          .strict(),
      )
      .default([
        // Yahoo/AOL "[TS0x] … try again later", Outlook "… try again later": the provider asks us to back off.
        { name: 'provider-try-later', match: '^4[0-9][0-9] .*try again later', action: 'suspend', seconds: 300, messagesPerSecond: 1 },
        // "too many connections / messages from your IP": keep sending, slowly.
        { name: 'too-many', match: 'too many (connections|messages)', action: 'slow', seconds: 600, messagesPerSecond: 1 },
      ]),
    /** Shared sending IPs (empty = the OS picks); never one that an account reserves. */
    sourceAddresses: z.array(sourceAddress).default([]),
  })
  .strict()
  .prefault({});

const http = z
  .object({
    host: host.default('127.0.0.1'),
    port: port.default(8080),
    /** Name of an environment variable holding the API key; null = <data>/secrets/api-key. */
    apiKeyEnv: z.string().nullable().default(null),
  })
  .strict()
  .prefault({});

/** The web dashboard on the hosted HTTP port (engine/dashboard/). */
const dashboard = z
  .object({
    /** Serve the dashboard pages at `/`; false = the API only. */
    enabled: z.boolean().default(true),
    /** A dashboard session ends after this long without a request (8 h: a working day). */
    sessionIdleMinutes: positiveInt.default(480),
    /**
     * Captured-mail pages read the capture sink's .eml/.json pairs from here; null = sink.dir,
     * else <data>/sink. The pages appear only when the folder exists (the sink is the MTA cluster).
     */
    captureDir: z.string().nullable().default(null),
  })
  .strict()
  .prefault({});

const sink = z
  .object({
    host: host.default('127.0.0.1'),
    port: port.default(2600),
    maxSize: positiveInt.default(DEFAULT_MAX_SIZE + MB),
    /** Where .eml/.json pairs go; null = <data>/sink. */
    dir: z.string().nullable().default(null),
    /**
     * Test behaviours: reply to RCPT TO of a matching recipient ("a@b.test", or
     * "@b.test" for a domain) with `reply` (e.g. "451 4.7.1 Try again later",
     * "550 5.1.1 No such user"), for the first `times` attempts (null = always).
     */
    rules: z
      .array(
        z
          .object({
            recipient: z.string().min(2),
            reply: z.string().regex(/^[45]\d\d [245]\.\d{1,3}\.\d{1,3} \S/, 'a reply is "451 4.7.1 text" or "550 5.1.1 text"'),
            times: positiveInt.nullable().default(null),
          })
          .strict(),
      )
      .default([]),
  })
  .strict()
  .prefault({});

/** A Standard Webhooks secret: `whsec_` and the base64 of at least 24 random bytes (`postino` makes them for API-added endpoints). */
export const WEBHOOK_SECRET = /^whsec_[A-Za-z0-9+/]{32,}={0,2}$/;
const webhookTypes = z.array(z.string().regex(/^[a-z][a-z.]*$/, 'an event type name like delivered')).default([]);

/** A webhook endpoint of an account (engine/events/webhooks.ts); `types` empty = every event type. */
const webhookEndpoint = z
  .object({
    id: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'a webhook id is lower-case letters, digits, - and _'),
    url: z.url({ protocol: /^https?$/ }),
    types: webhookTypes,
    /** The signing secret, or null with `secretEnv` naming an environment variable that holds it. */
    secret: z.string().regex(WEBHOOK_SECRET, 'a webhook secret looks like whsec_<base64>').nullable().default(null),
    secretEnv: z.string().nullable().default(null),
  })
  .strict()
  .refine((w) => w.secret !== null || w.secretEnv !== null, { message: 'a webhook needs secret or secretEnv', path: ['secret'] });

/**
 * The event log's readers (engine/events/): retention, webhooks delivery, the
 * reputation brake. Defaults keep 30 days of events and 13 months of statistics.
 */
const events = z
  .object({
    /** Events and the per-message history are kept this long. */
    retentionDays: z.number().positive().default(30),
    /** Statistics counters are kept this long (13 months: a year ago's same month). */
    statsRetentionDays: z.number().positive().default(396),
    /** How often retention prunes (in small batches). */
    pruneIntervalSeconds: z.number().positive().default(600),
    webhooks: z
      .object({
        /** Events per POST. */
        batchSize: z.number().int().min(1).max(1000).default(100),
        /**
         * After new events arrive, wait this long for more before POSTing a batch that is not full:
         * fewer, fuller POSTs (each costs two synced writes of the outbox) while mail trickles in.
         */
        batchWaitMs: z.number().int().min(0).max(60_000).default(1000),
        /** A POST not answered within this long counts as failed. */
        timeoutSeconds: z.number().positive().default(10),
        /** Waits between attempts while an endpoint fails; the last one repeats (Standard Webhooks' suggested schedule). */
        retrySeconds: z.array(z.number().positive()).min(1).default([5, 300, 1800, 7200, 18_000, 36_000]),
        /** An endpoint failing for this long is disabled and its account notified. */
        disableAfterHours: z.number().positive().default(72),
        /**
         * Several nodes (storage.postgres): a node silent this long (killed, hardware gone, cut off)
         * has its webhook outbox taken over by another node, which posts its events (engine/events/
         * webhook-outbox-postgres.ts). It is the lease each node renews every sixth of it: shorter
         * takes over sooner, but a node paused or cut off from PostgreSQL that long stops posting.
         * 30 s is three missed heartbeats, when `hosted status` shows the node silent.
         */
        takeoverSeconds: z.number().min(5).max(3600).default(30),
      })
      .strict()
      .prefault({}),
    /**
     * Reputation brake (engine/events/reputation-brake.ts): rates over the last `windowHours`
     * of an account's messages, evaluated as statistics fold; `pause` engages the account's
     * delivery kill-switch. Complaint defaults are the mailbox providers' published limits.
     */
    brake: z
      .object({
        enabled: z.boolean().default(true),
        windowHours: z.number().int().min(1).max(24 * 7).default(24),
        /** Below this many delivered messages in the window, no decision (rates of tiny samples mean nothing). */
        minMessages: z.number().int().min(1).default(500),
        complaintRate: z.object({ warn: z.number().min(0).max(1).default(0.001), pause: z.number().min(0).max(1).default(0.003) }).strict().prefault({}),
        hardBounceRate: z.object({ warn: z.number().min(0).max(1).default(0.02), pause: z.number().min(0).max(1).default(0.05) }).strict().prefault({}),
        blockRate: z.object({ warn: z.number().min(0).max(1).default(0.05), pause: z.number().min(0).max(1).default(0.1) }).strict().prefault({}),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .prefault({});

/**
 * Where state that every hosted node must agree on lives (issue #14). Absent
 * `postgres` (the default): in the node's own LevelDB, nothing to install, one
 * node. With `postgres`: the suppression list lives in that PostgreSQL database,
 * shared by every node that names it; each node keeps its own LevelDB queues.
 * The schema is applied by `postino db migrate` (common/storage/postgres/migrations.ts).
 */
const postgresUrl = z.string().superRefine((v, ctx) => {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'a URL like postgresql://user@host:5432/postino' });
    return;
  }
  if (u.protocol !== 'postgresql:' && u.protocol !== 'postgres:') ctx.addIssue({ code: 'custom', message: `the scheme is postgresql://, not ${u.protocol}//` });
});
const storage = z
  .object({
    postgres: z
      .object({
        /** libpq-style URL; the password may be given in it or by PGPASSWORD / ~/.pgpass (node-postgres reads both). */
        url: postgresUrl,
        /**
         * Connections this node keeps open at most. 10 (node-postgres' own default): the queries
         * are short point reads and small batches, so a few connections serve a whole node, and
         * 10 per node keeps 8 nodes under PostgreSQL's default max_connections of 100.
         */
        poolSize: z.number().int().min(1).max(1000).default(10),
        /**
         * A connection not made within this long fails the query: a suppression check then
         * defers the message (451 4.3.0, retried) instead of holding a worker. 5 s covers a
         * TLS handshake across a data centre many times over.
         */
        connectTimeoutSeconds: z.number().positive().max(300).default(5),
        /**
         * A query not answered within this long fails the same way (statement_timeout on the
         * server too). 10 s: every query here is an index lookup or a bounded batch; one that
         * takes longer means a locked or overloaded database, and the local queue waits better.
         */
        queryTimeoutSeconds: z.number().positive().max(3600).default(10),
      })
      .strict()
      .optional(),
  })
  .strict()
  .prefault({});

/**
 * Customer accounts of a hosted node. Each stage owns one sub-object:
 * `listener` (who may connect and send as whom), `engine` (rewrap settings),
 * `delivery` (sending IPs, pause). The default is one account, "default",
 * for the loopback forwarder of `postino up`.
 */
const account = z
  .object({
    id: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'an account id is lower-case letters, digits, - and _'),
    /** Networks this account's forwarders connect from. */
    networks: z.array(cidr).default(['127.0.0.1/32', '::1/128']),
    /**
     * HTTP API keys of this account (common/api-keys.ts): each sees and changes only this
     * account's events, statistics, suppressions and recipients. Hashes only; `postino
     * hosted api-key new <account>` prints a key and its entry.
     */
    apiKeys: z.array(z.object({ id: z.string().regex(API_KEY_ID, 'a key id is 4 to 32 lower-case letters and digits'), hash: scryptHash }).strict()).default([]),
    listener: accountListener.prefault({}),
    engine: accountEngine,
    /** Webhook endpoints of this account from config (more can be added with the API). */
    webhooks: z.array(webhookEndpoint).default([]),
    /** The web dashboard (engine/dashboard/): this account may also log in with a password (its API keys always work). */
    dashboard: z
      .object({
        /** scrypt hash of the dashboard password (`postino hash-password`); null = API key login only. */
        passwordHash: scryptHash.nullable().default(null),
      })
      .strict()
      .prefault({}),
    delivery: z
      .object({
        /** Reserved sending IPs of this account: it sends only from these, nobody else does. */
        sourceAddresses: z.array(sourceAddress).default([]),
      })
      .strict()
      .prefault({}),
    /** This account's message archive; null = the node's engine.archive value. */
    archive: z
      .object({
        enabled: z.boolean().nullable().default(null),
        retentionDays: positiveInt.nullable().default(null),
      })
      .strict()
      .prefault({}),
  })
  .strict();

const accounts = z
  .array(account)
  .min(1)
  // prefault, not default: the default account is parsed too, so its sub-objects get their defaults.
  .prefault([{ id: 'default', networks: ['127.0.0.1/32', '::1/128'] }])
  .superRefine((list, ctx) => {
    const seen = new Set<string>();
    const keyIds = new Set<string>();
    list.forEach((a, i) => {
      if (seen.has(a.id)) ctx.addIssue({ code: 'custom', path: [i, 'id'], message: `account id "${a.id}" is used twice` });
      seen.add(a.id);
      a.apiKeys.forEach((k, j) => {
        // The id picks the entry a presented key is checked against: it must name one.
        if (keyIds.has(k.id)) ctx.addIssue({ code: 'custom', path: [i, 'apiKeys', j, 'id'], message: `API key id "${k.id}" is used twice` });
        keyIds.add(k.id);
      });
      // A webhook id names the endpoint's durable cursor (engine/events/webhooks.ts): one per id.
      const hookIds = new Set<string>();
      a.webhooks.forEach((w, j) => {
        if (hookIds.has(w.id)) ctx.addIssue({ code: 'custom', path: [i, 'webhooks', j, 'id'], message: `webhook id "${w.id}" is used twice in this account` });
        hookIds.add(w.id);
      });
    });
  });

export const configSchema = z
  .object({
    log: z.object({ level: logLevel.default('info') }).strict().prefault({}),
    accounts,
    forwarder,
    listener,
    engine,
    feedback,
    delivery,
    http,
    sink,
    dashboard,
    events,
    storage,
  })
  .strict()
  .superRefine((c, ctx) => {
    // Reserved sending IPs stay reserved: not shared, not reserved twice.
    const owner = new Map<string, string>();
    c.accounts.forEach((a, i) =>
      a.delivery.sourceAddresses.forEach((s, j) => {
        const prev = owner.get(s.address);
        if (prev !== undefined && prev !== a.id)
          ctx.addIssue({ code: 'custom', path: ['accounts', i, 'delivery', 'sourceAddresses', j, 'address'], message: `${s.address} is already reserved by account "${prev}"` });
        owner.set(s.address, a.id);
      }),
    );
    c.delivery.sourceAddresses.forEach((s, j) => {
      const o = owner.get(s.address);
      if (o !== undefined) ctx.addIssue({ code: 'custom', path: ['delivery', 'sourceAddresses', j, 'address'], message: `${s.address} is reserved by account "${o}"; shared customers must never use it` });
    });
  });

export type Config = z.infer<typeof configSchema>;
export type ForwarderConfig = Config['forwarder'];
export type ListenerConfig = Config['listener'];
export type EngineConfig = Config['engine'];
export type FeedbackConfig = Config['feedback'];
export type EventsConfig = Config['events'];
export type DeliveryConfig = Config['delivery'];
export type SinkConfig = Config['sink'];
export type DashboardConfig = Config['dashboard'];
export type AccountConfig = Config['accounts'][number];
export type AccountListenerConfig = AccountConfig['listener'];
export type AccountEngineConfig = AccountConfig['engine'];
export type RelayConfig = DeliveryConfig['relays'][number];
export type SourceAddressConfig = DeliveryConfig['sourceAddresses'][number];
export type BackPressureRule = DeliveryConfig['backPressure'][number];
export type ShapingParams = DeliveryConfig['shaping']['default'];
export type StorageConfig = Config['storage'];
export type PostgresConfig = NonNullable<StorageConfig['postgres']>;

export interface ConfigProblem {
  path: string;
  message: string;
}

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: ConfigProblem[],
  ) {
    super(`${source}: ${problems.length} problem(s) in configuration`);
  }

  report(): string {
    const lines = this.problems.map((p) => `  ${p.path || '(top level)'}: ${p.message}`);
    return `${this.source}: ${this.problems.length} configuration problem${this.problems.length === 1 ? '' : 's'}\n${lines.join('\n')}`;
  }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

function formatIssue(issue: z.core.$ZodIssue): ConfigProblem[] {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((k) => ({ path: [...issue.path, k].join('.'), message: 'unknown key' }));
  }
  return [{ path: issue.path.join('.'), message: redactUrlsIn(issue.message) }];
}

/** Validates a parsed JSON value; throws ConfigError listing every problem. */
export function parseConfig(raw: unknown, source = 'config'): Config {
  const result = configSchema.safeParse(raw ?? {});
  if (!result.success) throw new ConfigError(source, result.error.issues.flatMap(formatIssue));
  return deepFreeze(result.data);
}

/** Reads and validates a config file; a missing path means "all defaults". */
export function loadConfig(file: string | undefined, overlay?: (raw: Record<string, unknown>) => Record<string, unknown>): Config {
  let raw: Record<string, unknown> = {};
  const source = file ?? 'built-in defaults';
  if (file) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError(source, [{ path: '', message: `cannot read: ${(e as Error).message}` }]);
    }
    try {
      raw = JSON.parse(text) as Record<string, unknown>;
    } catch (e) {
      throw new ConfigError(source, [{ path: '', message: `not valid JSON: ${(e as Error).message}` }]);
    }
    if (!raw || typeof raw !== 'object' || Array.isArray(raw))
      throw new ConfigError(source, [{ path: '', message: 'the file must hold a JSON object' }]);
  }
  return parseConfig(overlay ? overlay(raw) : raw, source);
}
