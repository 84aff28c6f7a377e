// Minify the JS tracker (static/footprint.js) into build/static/, which settings.py lists
// before static/ so Footprint serves the minified file. Run by `make install`
// (npm run build:tracker); build/ is not committed.
//
//   build/static/footprint.js                  stable URL (short cache): Carma's tag, old pages
//   build/static/tracker/<hash>/footprint.js   versioned URL (cached for a year): the snippet
//   build/tracker.json                         which version is current (tracking/tracker.py)
//   (each .js with .gz and .br beside it)
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";
import { minify } from "terser";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const source = readFileSync(join(root, "static", "footprint.js"), "utf8");
const { code } = await minify(source, {
  ecma: 5,
  compress: { passes: 2 },
  mangle: true,
  format: { comments: /^!/ },
});
const version = createHash("sha256").update(code).digest("hex").slice(0, 12);
const staticDir = join(root, "build", "static");
const versionsDir = join(staticDir, "tracker");

mkdirSync(versionsDir, { recursive: true });
for (const old of readdirSync(versionsDir)) {
  if (old !== version) rmSync(join(versionsDir, old), { recursive: true, force: true });
}
mkdirSync(join(versionsDir, version), { recursive: true });
// Compressed copies beside each: whitenoise serves the one a browser accepts (it does not
// compress files it finds through the static finders itself).
const gzip = gzipSync(code, { level: 9 });
const brotli = brotliCompressSync(code, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } });
for (const file of [join(staticDir, "footprint.js"), join(versionsDir, version, "footprint.js")]) {
  writeFileSync(file, code);
  writeFileSync(file + ".gz", gzip);
  writeFileSync(file + ".br", brotli);
}
const gzipped = gzip.length;
const manifest = { version, path: `tracker/${version}/footprint.js`, bytes: code.length, gzip_bytes: gzipped };
writeFileSync(join(root, "build", "tracker.json"), JSON.stringify(manifest, null, 2) + "\n");
console.log(`footprint.js ${version}: ${code.length} bytes, ${gzipped} gzipped`);
