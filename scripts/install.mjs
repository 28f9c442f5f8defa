// `npm install` builds the addon. Without libremctl's header the compiler
// would fail pages deep; say in one sentence what to install instead.
import { spawnSync } from 'node:child_process';
import { findLibremctl, MISSING_HEADER } from './libremctl.mjs';

if (findLibremctl().header === null) {
  console.error(MISSING_HEADER);
  process.exit(1);
}
const result = spawnSync('node-gyp', ['rebuild'], { stdio: 'inherit', shell: false });
if (result.error) {
  console.error(`remctl: cannot run node-gyp: ${result.error.message}`);
  process.exit(1);
}
process.exit(result.status ?? 1);
