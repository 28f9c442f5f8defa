// Loads build/Release/remctl.node in whichever Node.js runs this and says
// so: CI runs it with each supported major against the one build, the
// N-API promise that one binary serves them all.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const addonPath = join(dirname(fileURLToPath(import.meta.url)), '..', 'build', 'Release', 'remctl.node');
const addon = createRequire(import.meta.url)(addonPath);
if (typeof addon.RemctlHandle !== 'function' || typeof addon.canonicalName !== 'function') {
  console.error(`check-addon: ${addonPath} loaded but lacks RemctlHandle or canonicalName`);
  process.exit(1);
}
const handle = new addon.RemctlHandle();
// The raw methods settle through a callback (lib/addon.ts makes Promises of them).
await new Promise((resolve, reject) => handle._close((value, error) => (error === undefined ? resolve(value) : reject(error))));
console.log(`check-addon: Node.js ${process.versions.node} (N-API ${process.versions.napi}, ABI ${process.versions.modules}) loads ${addonPath}`);
