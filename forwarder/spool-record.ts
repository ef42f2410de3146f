/*
 * spool-record.ts — what the forwarder keeps with each spooled message.
 */
import type { RelayMeta } from '../common/relay-worker.js';

export type SpoolMeta = RelayMeta;
