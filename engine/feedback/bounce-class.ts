/*
 * bounce-class.ts — the one place that says what a failed delivery means for
 * the address: hard (the address is gone: suppress it), soft (this message or
 * this moment: no suppression) or block (policy or reputation: the receiver
 * refuses us, not the address: no suppression, feeds the reputation brake).
 *
 * Standards: RFC 3463 (enhanced status codes: class.subject.detail), RFC 5321
 * 4.2 (reply codes), RFC 7505 (null MX, X.1.10), RFC 7372 (X.7.20–X.7.29
 * authentication and DMARC failures).
 *   hard  X.1.x addressing (bad mailbox, bad domain, moved, null MX) and X.2.1
 *         (mailbox disabled); but not X.1.7 / X.1.8, which are about OUR sender
 *         address (the receiver refuses the envelope sender): those are block.
 *   soft  every 4.x.x; X.2.2 full, X.2.3 too long, X.3.x system, X.4.x routing
 *         and timeouts, X.5.x protocol, X.6.x content conversion, any other 5xx.
 *   block X.7.x (security and policy), and a generic code (X.0.0, X.5.0, a bare
 *         550) or no code whose text names spam, a blocklist, DMARC/SPF/DKIM,
 *         policy or a rate limit.
 * A 5.2.0 ("other mailbox status": RFC 3463 says the mailbox exists) is hard
 * only when its text names an unknown or disabled user, like a generic code.
 * Text is read with short literal patterns (no nested quantifiers), so a scan
 * is linear in its length; callers pass a bounded diagnostic, not whole parts.
 *
 * Config: none (the phrase tables below are data; add a language by adding rows).
 * Side effects: none.
 */

export type BounceClass = 'hard' | 'soft' | 'block';

/** RFC 3463 2: class "." subject "." detail, subject and detail 1–3 digits. */
const ENHANCED_STATUS = /^([245])\.(\d{1,3})\.(\d{1,3})$/;
/**
 * The same inside text: not part of an IP address or version number (10.4.5.6, 4.94.2.1), nor
 * of a word or an address (a host name, our VERP address quoted in the diagnostic).
 */
const ENHANCED_IN_TEXT = /(?<![\w.@+])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)/;
/**
 * An SMTP reply code at the start of a diagnostic ("550 ", "550-", "554:"), never digits inside an
 * address, a token or a parameter: our own VERP address is quoted in many bounces ("after MAIL
 * FROM:<bounces+…f451-…@…> SIZE=2412: 550 …"), and a queue id ending in "451" was read as a 451.
 */
const REPLY_CODE_IN_TEXT = /(?<![\w.@+=\-/])([245][0-5]\d)(?=[ \-:]|$)/;
/** Diagnostics longer than this are read only up to it (the reason is in the first lines). */
export const MAX_DIAGNOSTIC_CHARS = 16 * 1024;

interface PhraseRule {
  re: RegExp;
  /** The RFC 3463 code a text-only bounce is given. */
  status: string;
}

/** Policy and reputation refusals; checked before the address phrases. */
const BLOCK_PHRASES: readonly PhraseRule[] = [
  { re: /spam/, status: '5.7.1' }, // spam, spamhaus, spamcop, "als Spam", "considéré comme spam", "спам" is below
  { re: /спам/, status: '5.7.1' },
  { re: /black ?list|block ?list|deny ?list|blacklisted|blocklisted/, status: '5.7.1' },
  { re: /\brbl\b|\bdnsbl\b|barracuda|\bsorbs\b|spamrats|\bcbl\b/, status: '5.7.1' },
  { re: /\bblocked\b|\bblock\b/, status: '5.7.1' },
  { re: /\bdmarc\b/, status: '5.7.26' },
  { re: /\bspf\b/, status: '5.7.23' },
  { re: /\bdkim\b/, status: '5.7.20' },
  { re: /\bpolicy\b|policies|politique|richtlinie|política|politica/, status: '5.7.1' },
  { re: /reputation|réputation|reputación/, status: '5.7.1' },
  { re: /rate ?limit|rate-limit|unusual rate|sending rate|too many (?:connections|messages|mails|emails|e-mails|requests|complaints|concurrent)/, status: '5.7.1' },
];

/** Addresses that do not exist or no longer take mail (hard). */
const HARD_PHRASES: readonly PhraseRule[] = [
  // English, and the phrasing of the major providers and MTAs (domains first: "domain does not exist")
  { re: /host or domain name not found|domain not found|domain does not exist|no such domain|unknown domain/, status: '5.1.2' },
  { re: /user unknown|unknown user|unknown recipient|recipient unknown|no such user|no such recipient|no such mailbox|no such person/, status: '5.1.1' },
  { re: /no mailbox here by that name|mailbox not found|mailbox unavailable|mailbox does not exist|mailbox doesn't exist|not a valid mailbox|invalid mailbox/, status: '5.1.1' },
  { re: /does not exist|doesn't exist|did not exist|address not found|couldn't be found|could not be found|recipient not found|invalid recipient|recipient address rejected|unrouteable address|unroutable address/, status: '5.1.1' },
  { re: /doesn't have a [a-z0-9.-]{1,64} account|not our customer|no longer (?:a valid|available|in use)|address (?:is )?invalid|bad destination mailbox/, status: '5.1.1' },
  { re: /null mx/, status: '5.1.10' },
  { re: /account (?:has been |is )?disabled|account (?:has been |is )?(?:deactivated|suspended|closed|inactive)|inactive account|mailbox (?:has been |is )?disabled|mailbox (?:is )?inactive/, status: '5.2.1' },
  // German
  { re: /benutzer unbekannt|unbekannter benutzer|empfänger unbekannt|unbekannter empfänger|adresse unbekannt|existiert nicht|gibt es nicht|postfach (?:ist )?nicht vorhanden/, status: '5.1.1' },
  { re: /konto (?:ist )?(?:deaktiviert|gesperrt)|postfach (?:ist )?deaktiviert/, status: '5.2.1' },
  // French
  { re: /utilisateur inconnu|destinataire inconnu|adresse inconnue|adresse introuvable|n'existe pas|n’existe pas|adresse (?:e-mail )?invalide|boîte (?:aux lettres )?inexistante/, status: '5.1.1' },
  { re: /compte (?:désactivé|suspendu|inactif)/, status: '5.2.1' },
  // Spanish
  { re: /usuario desconocido|destinatario desconocido|no existe|dirección no válida|buzón no encontrado/, status: '5.1.1' },
  { re: /cuenta (?:desactivada|deshabilitada|suspendida)/, status: '5.2.1' },
  // Italian
  { re: /utente sconosciuto|destinatario sconosciuto|utente inesistente|indirizzo inesistente|non esiste/, status: '5.1.1' },
  { re: /account (?:disattivato|sospeso)|casella (?:disattivata|sospesa)/, status: '5.2.1' },
  // Portuguese
  { re: /usuário desconhecido|utilizador desconhecido|destinatário desconhecido|não existe|endereço inexistente/, status: '5.1.1' },
  { re: /conta (?:desativada|suspensa)/, status: '5.2.1' },
  // Dutch
  { re: /gebruiker onbekend|onbekende gebruiker|onbekende ontvanger|ontvanger onbekend|bestaat niet/, status: '5.1.1' },
  { re: /account (?:is )?(?:uitgeschakeld|opgeheven)/, status: '5.2.1' },
  // Russian
  { re: /пользователь не найден|нет такого пользователя|неизвестный пользователь|адресат не найден|не существует|несуществующий/, status: '5.1.1' },
  { re: /(?:ящик|аккаунт|учетная запись) (?:заблокирован|отключен)/, status: '5.2.1' },
];

/** A full mailbox or an oversize message (soft). */
const SOFT_PHRASES: readonly PhraseRule[] = [
  { re: /mailbox (?:is )?full|mailbox (?:is )?over|over ?quota|quota exceeded|exceeded (?:the |its |their )?(?:storage|quota)|insufficient (?:storage|system storage)|storage (?:space )?(?:is )?full|out of storage|inbox is full/, status: '5.2.2' },
  { re: /postfach (?:ist )?voll|mailbox voll|speicherplatz|quota überschritten|boîte (?:aux lettres )?pleine|boite pleine|quota dépassé|buzón (?:está )?lleno|cuota excedida|casella (?:di posta )?piena|spazio esaurito|caixa (?:postal|de correio|de entrada)? ?(?:está )?cheia|cota excedida|mailbox (?:is )?vol\b|postbus (?:is )?vol|ящик переполнен|превышен(?:а)? квот/, status: '5.2.2' },
  { re: /message (?:is )?too (?:large|big)|message size exceeds|exceeds (?:the )?(?:maximum )?(?:message )?size|size limit/, status: '5.3.4' },
];

function findRule(rules: readonly PhraseRule[], text: string): PhraseRule | undefined {
  return rules.find((r) => r.re.test(text));
}

/** The first RFC 3463 code in a text ("550 5.1.1 …", "(#5.1.1)"), if any. */
export function findEnhancedStatus(text: string): string | undefined {
  const m = ENHANCED_IN_TEXT.exec(text.length > MAX_DIAGNOSTIC_CHARS ? text.slice(0, MAX_DIAGNOSTIC_CHARS) : text);
  return m ? `${m[1]}.${Number(m[2])}.${Number(m[3])}` : undefined;
}

/** The SMTP reply code a diagnostic starts with or first names ("550", "554:"). */
export function findReplyCode(text: string): number | undefined {
  const m = REPLY_CODE_IN_TEXT.exec(text.length > MAX_DIAGNOSTIC_CHARS ? text.slice(0, MAX_DIAGNOSTIC_CHARS) : text);
  return m ? Number(m[1]) : undefined;
}

/** A well-formed RFC 3463 code, normalised ("5.01.1" → "5.1.1"), else undefined. */
export function normalizeStatus(status: string | undefined): string | undefined {
  const m = ENHANCED_STATUS.exec((status ?? '').trim());
  return m ? `${m[1]}.${Number(m[2])}.${Number(m[3])}` : undefined;
}

export interface InferredStatus {
  status: string;
  class: BounceClass;
}

/**
 * What a text alone says (no status given): block phrases first (a "mailbox
 * unavailable" that names Spamhaus is a listing, not a missing user), then
 * unknown or disabled users (hard), then full mailboxes and sizes (soft).
 */
export function inferStatus(text: string): InferredStatus | undefined {
  const t = lowerBounded(text);
  const block = findRule(BLOCK_PHRASES, t);
  if (block) return { status: block.status, class: 'block' };
  const hard = findRule(HARD_PHRASES, t);
  if (hard) return { status: hard.status, class: 'hard' };
  const soft = findRule(SOFT_PHRASES, t);
  if (soft) return { status: soft.status, class: 'soft' };
  return undefined;
}

function lowerBounded(text: string): string {
  return (text.length > MAX_DIAGNOSTIC_CHARS ? text.slice(0, MAX_DIAGNOSTIC_CHARS) : text).toLowerCase();
}

/**
 * hard / soft / block for a failed delivery. `status` is the DSN Status (or
 * undefined), `text` the diagnostic, `smtpCode` the reply code when known.
 * A missing or generic status is refined from a specific code in the text.
 * Delivered and delayed are the caller's business (Action); a 2.x.x status
 * here reads as soft, a status-less 4xx reply as soft.
 */
export function classifyStatus(status: string | undefined, text: string, smtpCode?: number): BounceClass {
  let s = normalizeStatus(status);
  if (!s || isGeneric(s)) s = findEnhancedStatus(text) ?? s;
  const code = smtpCode ?? findReplyCode(text);
  const cls = s ? s[0] : code !== undefined ? String(code)[0] : undefined;
  if (cls === '4' || cls === '2') return 'soft';
  if (s && cls === '5') {
    const [, subject, detail] = s.split('.');
    if (subject === '7') return 'block';
    if (subject === '1') return detail === '7' || detail === '8' ? 'block' : 'hard';
    if (subject === '2' && detail === '1') return 'hard';
    if (subject === '2' && detail !== '0') return 'soft'; // X.2.2 full, X.2.3 too long, X.2.4 list expansion
    if (!isGeneric(s) && subject !== '2') return textBlock(text) && subject !== '3' ? 'block' : 'soft';
  }
  // Generic code (X.0.0, X.2.0, X.5.0), a bare 5xx, or nothing: the text decides.
  return inferStatus(text)?.class ?? 'soft';
}

/** X.0.0, X.5.0 and X.2.0 say only "failed": the text says why. */
function isGeneric(s: string): boolean {
  return s.endsWith('.0.0') || s.endsWith('.5.0') || s.endsWith('.2.0');
}

/** Rate limits and listings named under a non-policy code (5.4.x, 5.5.x). */
function textBlock(text: string): boolean {
  return findRule(BLOCK_PHRASES, lowerBounded(text)) !== undefined;
}

export interface ResolvedFailure {
  /** The status to report: as given, or refined from the text when generic or missing. */
  status: string | undefined;
  class: BounceClass;
}

/**
 * Status and class of one failed recipient. A generic or missing status
 * (5.0.0, none) is replaced by the specific code the diagnostic names, else by
 * the code its phrase implies (5.1.1 for "user unknown"), keeping the class
 * digit of what was given (a 4.0.0 "mailbox full" stays 4.2.2). So the status
 * an event carries always explains its class.
 */
export function resolveFailure(status: string | undefined, text: string, smtpCode?: number): ResolvedFailure {
  let s = normalizeStatus(status);
  const code = smtpCode ?? findReplyCode(text);
  if (!s || isGeneric(s)) {
    const specific = findEnhancedStatus(text);
    const digit = s?.[0] ?? specific?.[0] ?? (code !== undefined ? String(code)[0] : undefined);
    if (specific && !isGeneric(specific)) s = specific;
    else {
      const inferred = inferStatus(text);
      if (inferred) s = digit === '4' ? `4${inferred.status.slice(1)}` : inferred.status;
      else s ??= specific ?? (code !== undefined ? `${String(code)[0]}.0.0` : undefined);
    }
  }
  return { status: s, class: classifyStatus(s, text, code) };
}
