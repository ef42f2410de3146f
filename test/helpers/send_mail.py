#!/usr/bin/env python3
"""Sends test messages with Python's smtplib (a real client, not ours).

One JSON line per message on stdout:
  {"i": 3, "ok": true, "testId": "...", "bodySha": "...", "reply": "..."}
  {"i": 4, "ok": false, "error": "..."}
Options:
  --port P --count N [--start K] [--prefix S] [--specials] [--stop-on-error]
  [--rcpt N] [--interval-ms MS] [--error-pause-ms MS]
  --specials adds, at fixed positions, a 10 MB attachment (i=start+1), an
  RFC 2047 UTF-8 subject (i=start+2) and body lines starting with a dot (i=start+3).
Every message's body is CRLF-normalized before hashing, as smtplib sends it.
"""
import argparse, hashlib, json, os, smtplib, sys, time
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

ap = argparse.ArgumentParser()
ap.add_argument('--host', default='127.0.0.1')
ap.add_argument('--port', type=int, required=True)
ap.add_argument('--count', type=int, required=True)
ap.add_argument('--start', type=int, default=0)
ap.add_argument('--prefix', default='t')
ap.add_argument('--specials', action='store_true')
ap.add_argument('--stop-on-error', action='store_true')
ap.add_argument('--rcpt', type=int, default=1, help='recipients per message')
ap.add_argument('--interval-ms', type=float, default=0, help='pause between messages (a steady stream)')
ap.add_argument('--error-pause-ms', type=float, default=0, help='pause after a failed message (server down)')
args = ap.parse_args()

def build(i):
    test_id = f'{args.prefix}-{i}'
    m = EmailMessage(policy=SMTP_POLICY)
    m['From'] = 'shop@example.org'
    m['To'] = 'customer@example.com'
    m['Subject'] = f'Order {i} confirmation'
    m['Message-ID'] = f'<{test_id}@test.postino>'
    m['X-Test-Id'] = test_id
    text = f'Hello, this is message {i}.\nThank you for your order.\n'
    k = i - args.start
    if args.specials and k == 1:
        m.set_content(text)
        m.add_attachment(os.urandom(10 * 1024 * 1024), maintype='application', subtype='octet-stream', filename='big.bin')
    elif args.specials and k == 2:
        m.replace_header('Subject', f'Grüße, 注文 {i} — ✓ bestätigt')
        m.set_content(text + 'Unicode body: Grüße ✓\n', charset='utf-8')
    elif args.specials and k == 3:
        m.set_content(text + '.a line that starts with a dot\n..two dots\n.\nafter a lone dot\n')
    else:
        m.set_content(text)
    raw = m.as_bytes()
    body = raw.split(b'\r\n\r\n', 1)[1]
    return test_id, raw, hashlib.sha256(body).hexdigest()

rcpts = [f'customer{n}@example.com' for n in range(args.rcpt)]
for i in range(args.start, args.start + args.count):
    test_id, raw, sha = build(i)
    try:
        with smtplib.SMTP(args.host, args.port, timeout=60) as s:
            s.ehlo('app.test')
            s.mail('shop@example.org')
            for r in rcpts:
                code, msg = s.rcpt(r)
                if code != 250:
                    raise smtplib.SMTPRecipientsRefused({r: (code, msg)})
            code, msg = s.data(raw)
            if code != 250:
                raise smtplib.SMTPDataError(code, msg)
        print(json.dumps({'i': i, 'ok': True, 'testId': test_id, 'bodySha': sha, 'size': len(raw), 'reply': msg.decode()}), flush=True)
    except Exception as e:
        print(json.dumps({'i': i, 'ok': False, 'testId': test_id, 'error': f'{type(e).__name__}: {e}'}), flush=True)
        if args.stop_on_error:
            sys.exit(0)
        if args.error_pause_ms:
            time.sleep(args.error_pause_ms / 1000)
    if args.interval_ms:
        time.sleep(args.interval_ms / 1000)
