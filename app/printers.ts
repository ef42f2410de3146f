/*
 * printers.ts — the status pages of `postino forwarder status` and `postino
 * hosted status`: one fact per line, `key  value`, so a person reads them and
 * grep finds them.
 */
import type { RelayHealthStatus } from '../common/relay-health.js';
import type { DeliveryStatus } from '../engine/delivery/queue-status.js';
import type { FailedEntry } from '../engine/failed-routes.js';
import type { NodeStatus } from '../engine/nodes/node-registry.js';

export function duration(seconds: number): string {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function rows(pairs: Array<[string, unknown]>, width: number): string[] {
  return pairs.map(([k, v]) => `${k.padEnd(width)} ${String(v)}`);
}

/** One relay's state: `up`, or `DOWN since … (why), next probe in … s, holding N`. */
export function relayState(r: RelayHealthStatus): string {
  if (r.state === 'up') return 'up';
  return `DOWN since ${String(r.downSince)} (${String(r.lastError)}), next probe in ${String(r.nextProbeInSeconds)} s, holding ${r.held}`;
}

/** The forwarder's GET /status, readably. */
export function formatForwarderStatus(s: Record<string, unknown>): string {
  const drain = s.estimatedDrainSeconds;
  return (
    rows(
      [
        ['relaying', s.paused ? `PAUSED since ${String(s.pausedSince)} (postino forwarder resume)` : 'running'],
        ['intake', s.intakePaused ? 'PAUSED: new mail gets 421' : 'accepting'],
        ['queued', s.queued],
        ['inFlight', s.inFlight],
        ['deferred', s.deferred],
        ['delivered', s.delivered],
        ['failed', s.failed],
        ['oldestAge', duration(Number(s.oldestAgeSeconds))],
        ['relayRate', `${String(s.relayRatePerSecond)} msg/s (last minute)`],
        ['drainEstimate', drain === null ? 'unknown (paused or nothing relayed lately)' : duration(Number(drain))],
        ['spoolDisk', `${(Number(s.spoolDiskBytes) / 1024).toFixed(1)} KiB`],
        ['held', s.held ?? 0],
        ...((s.relays ?? []) as RelayHealthStatus[]).map((r): [string, unknown] => ['relay', `${r.relay} ${relayState(r)}`]),
      ],
      14,
    ).join('\n') + '\n'
  );
}

export interface HostedQueueBody {
  intake: number;
  delivery: DeliveryStatus;
  /** Failed records per queue (absent from an older node). */
  failed?: Record<string, number>;
  /** Every node of the installation (absent from an older node). */
  nodes?: NodeStatus[];
}

/** The installation's nodes, one line each; a silent one with when it was last heard from. */
function nodeLines(nodes: NodeStatus[]): string[] {
  const out = ['', `${'node'.padEnd(34)} ${'state'.padEnd(7)} ${'intake'.padStart(7)} ${'queued'.padStart(7)} ${'failed'.padStart(7)}  paused`];
  for (const n of nodes) {
    const name = `${n.node}${n.self ? ' (this)' : ''}`;
    const paused = n.pausedGlobal ? 'global' : n.pausedAccounts ? `${n.pausedAccounts} accounts` : 'no';
    const state = n.state === 'up' ? 'up' : `SILENT since ${n.seenAt}`;
    out.push(`${name.padEnd(34)} ${state.padEnd(7)} ${String(n.intake).padStart(7)} ${String(n.queued).padStart(7)} ${String(n.failed).padStart(7)}  ${paused}${n.secretsDiffer ? '  SECRETS DIFFER' : ''}`);
  }
  if (nodes.some((n) => n.secretsDiffer)) out.push('SECRETS DIFFER: token or pseudonym keys not the same as this node\'s; links one node signs fail on the other: copy data/secrets to every node');
  return out;
}

/** The hosted node's GET /api/queue like the forwarder's status, then domains and relays. */
export function formatHostedStatus(body: HostedQueueBody): string {
  const d = body.delivery;
  const paused = d.paused.global ? 'yes (global)' : d.paused.accounts.length ? `accounts: ${d.paused.accounts.join(', ')}` : 'no';
  const out = rows(
    [
      ['intake', body.intake],
      ['delivery', d.total],
      ['queued', d.states.queued],
      ['ready', d.states.ready],
      ['sending', d.states.sending],
      ['deferred', d.states.deferred],
      ['paused', paused],
      ['oldestAgeSeconds', d.oldestAgeSeconds],
      ['ratePerSecond', d.ratePerSecond],
      ['estimatedDrainSeconds', d.estimatedDrainSeconds ?? 'unknown (no recent deliveries)'],
      ...Object.entries(body.failed ?? {}).map(([q, n]): [string, unknown] => [`failed.${q}`, n > 0 ? `${n} (postino hosted failed list)` : 0]),
      ...Object.entries(d.outcomes),
    ],
    22,
  );
  if (d.domains.length) {
    out.push('', `${'domain'.padEnd(30)} ${'total'.padStart(7)} ${'ready'.padStart(7)} ${'sending'.padStart(7)} ${'deferred'.padStart(8)}`);
    for (const x of d.domains.slice(0, 20)) out.push(`${x.domain.padEnd(30)} ${String(x.total).padStart(7)} ${String(x.ready).padStart(7)} ${String(x.sending).padStart(7)} ${String(x.deferred).padStart(8)}`);
  }
  for (const l of d.lanes) if (l.suspendedUntil || l.slowedUntil) out.push(`${l.domain}: ${l.suspendedUntil ? `suspended until ${l.suspendedUntil}` : `slowed until ${l.slowedUntil}`} (rule ${l.rule ?? '?'})`);
  out.push('', ...d.relays.map((r) => `relay ${r.relay} weight ${r.weight} sent ${r.sent} ${relayState(r)}`));
  if (body.nodes?.length) out.push(...nodeLines(body.nodes));
  return out.join('\n') + '\n';
}

/** `postino hosted failed list`: one message per line, then its error. */
export function formatFailed(list: FailedEntry[]): string {
  if (list.length === 0) return 'no failed messages\n';
  const out: string[] = [];
  for (const f of list) {
    out.push(`${f.id}  ${f.queue}  failed ${f.failedAt ?? '?'}  attempts ${f.attempts}  account ${f.account ?? '-'}  from <${f.sender ?? ''}>  to ${f.recipients.join(', ') || '-'}`);
    out.push(`    ${f.error ?? ''}`);
  }
  return out.join('\n') + '\n';
}

export interface BrakeBody {
  paused: Array<{ account: string; at: string; reason?: string | undefined; figures?: { sent: number; complaintRate: number; hardBounceRate: number; blockRate: number } | undefined }>;
}

/** GET /api/brake under the status: which accounts the reputation brake paused, and why. */
export function formatBrake(body: BrakeBody): string {
  if (!body.paused.length) return '';
  return '\n' + body.paused.map((p) => `brake: account ${p.account} paused at ${p.at}: ${p.reason ?? ''}\n  resume with: postino hosted resume --account ${p.account}\n`).join('');
}
