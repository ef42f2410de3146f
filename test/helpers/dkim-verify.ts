/* DKIM verification with mailauth (an independent implementation), against a key we serve from a fake DNS resolver. */
import { createRequire } from 'node:module';
import { dkimTxtValue } from '../../engine/rewrap/dkim-keys.js';

interface DkimResult {
  signingDomain: string;
  selector: string;
  status: { result: string; comment?: string };
}
type Resolver = (name: string, type: string) => Promise<string[][]>;
// mailauth 4 ships no type declarations: this is the one function we use.
const { dkimVerify } = createRequire(import.meta.url)('mailauth/lib/dkim/verify.js') as {
  dkimVerify(message: Buffer, opts: { resolver: Resolver }): Promise<{ results: DkimResult[] }>;
};

/** Verifies every DKIM signature; the resolver answers `<selector>._domainkey.<domain>` with our public key. */
export async function verifyDkim(message: Buffer, domain: string, selector: string, privateKeyPem: string): Promise<DkimResult[]> {
  const resolver: Resolver = async (name, type) => {
    if (type === 'TXT' && name === `${selector}._domainkey.${domain}`) return [[dkimTxtValue(privateKeyPem)]];
    const e = new Error(`no record for ${name}`) as Error & { code: string };
    e.code = 'ENOTFOUND';
    throw e;
  };
  return (await dkimVerify(message, { resolver })).results;
}
