/**
 * Builds the operations console into a folder the cloud serves at /console (dist/console by default): one bundled
 * script, its stylesheet and the page. Run by `npm run build` (and so by `npm install`, through `prepare`); nothing is
 * fetched at run time.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));

export async function buildConsole(outDir: string, options: { minify?: boolean } = {}): Promise<string> {
  await mkdir(outDir, { recursive: true });
  await build({
    entryPoints: [path.join(here, 'src', 'main.ts')],
    outfile: path.join(outDir, 'console.js'),
    bundle: true,
    format: 'esm',
    target: 'es2022',
    minify: options.minify ?? true,
    sourcemap: true,
    logLevel: 'warning',
  });
  await copyFile(path.join(here, 'index.html'), path.join(outDir, 'index.html'));
  await copyFile(path.join(here, 'console.css'), path.join(outDir, 'console.css'));
  return outDir;
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const outDir = path.resolve(here, '..', process.argv[2] ?? 'dist/console');
  await buildConsole(outDir);
  console.log(`console built into ${path.relative(process.cwd(), outDir) || '.'}`);
}
