/*
 * spool-record.ts — what the forwarder keeps with each spooled message.
 */
import type { RelayMeta } from '../common/relay-meta.js';

export type SpoolMeta = RelayMeta;
