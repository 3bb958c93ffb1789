'use strict';
// npm pack hooks: `prepack` copies ../../proto/satlab/v1/*.proto into
// ./proto/satlab/v1 so that the tarball carries them; `postpack` removes the
// copy again, so that the checkout keeps reading ../../proto (no stale copy).
// Usage: node scripts/pack-protos.js copy|clean
const fs = require('fs');
const path = require('path');

const pkg = path.resolve(__dirname, '..');
const dest = path.join(pkg, 'proto');
const src = path.resolve(pkg, '..', '..', 'proto', 'satlab', 'v1');

const what = process.argv[2];
fs.rmSync(dest, { recursive: true, force: true });
if (what === 'copy') {
  const files = fs.readdirSync(src).filter((f) => f.endsWith('.proto'));
  if (!files.includes('training_service.proto')) {
    console.error(`pack-protos: no training_service.proto in ${src}`);
    process.exit(1);
  }
  fs.mkdirSync(path.join(dest, 'satlab', 'v1'), { recursive: true });
  for (const f of files) fs.copyFileSync(path.join(src, f), path.join(dest, 'satlab', 'v1', f));
  console.error(`pack-protos: ${files.length} protos -> proto/satlab/v1`);
} else if (what !== 'clean') {
  console.error('usage: pack-protos.js copy|clean');
  process.exit(2);
}
