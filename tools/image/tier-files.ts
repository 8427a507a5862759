/**
 * Which files one tier's image needs: the compiled modules reachable from its entry points
 * and the npm packages they require, with those packages' own dependencies as the lockfile
 * resolves them. The images share one build stage; this is what lets the gateway image
 * ship without the MongoDB driver and core without ssh2. Pure: the caller reads the files.
 */
import { builtinModules } from 'node:module';
import { posix } from 'node:path';

export type Tier = 'gateway' | 'broker' | 'core';

/** Entry points per tier, relative to the compiled tree. Core also carries the operator tools. */
export const TIER_ENTRIES: Record<Tier, readonly string[]> = {
  gateway: ['services/gateway/main.js'],
  broker: ['services/broker/main.js'],
  core: ['services/core/main.js', 'services/core/admin/cli.js', 'services/keygen/main.js'],
};

export function isTier(name: string): name is Tier {
  return Object.hasOwn(TIER_ENTRIES, name);
}

const BUILTINS = new Set(builtinModules);
// tsc emits `require("x")` with double quotes; nothing in our compiled code requires dynamically.
const REQUIRE = /\brequire\("([^"]+)"\)/g;

/** The specifiers a compiled module requires, in order of appearance. */
export function requiredSpecifiers(source: string): string[] {
  return [...source.matchAll(REQUIRE)].map((m) => m[1] as string);
}

/** "ajv/dist/2020" → "ajv"; "@peculiar/x509/lib" → "@peculiar/x509"; builtins → undefined. */
export function packageOf(specifier: string): string | undefined {
  if (specifier.startsWith('node:') || BUILTINS.has(specifier.split('/')[0] ?? '')) return undefined;
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

export class UnresolvedModuleError extends Error {
  readonly code = 'unresolved_module';
  constructor(message: string) {
    super(message);
    this.name = 'UnresolvedModuleError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/**
 * Follows relative requires from `entries` through `readModule` (path → source, or
 * undefined when no such file). Returns the module paths reached and the packages required.
 */
export function traceModules(entries: readonly string[], readModule: (path: string) => string | undefined): { modules: string[]; packages: string[] } {
  const modules = new Set<string>();
  const packages = new Set<string>();
  const queue = [...entries];
  for (let path = queue.shift(); path !== undefined; path = queue.shift()) {
    if (modules.has(path)) continue;
    const source = readModule(path);
    if (source === undefined) throw new UnresolvedModuleError(`module ${path} not found`);
    modules.add(path);
    for (const spec of requiredSpecifiers(source)) {
      if (spec.startsWith('.')) {
        const target = posix.normalize(posix.join(posix.dirname(path), spec));
        const candidates = [target, `${target}.js`, `${target}/index.js`];
        const found = candidates.find((c) => c.endsWith('.js') && readModule(c) !== undefined);
        if (!found) throw new UnresolvedModuleError(`${path} requires ${spec}, which resolves to no module`);
        queue.push(found);
      } else {
        const pkg = packageOf(spec);
        if (pkg) packages.add(pkg);
      }
    }
  }
  return { modules: [...modules].sort(), packages: [...packages].sort() };
}

/** The part of a v2/v3 package-lock.json this needs. */
export interface Lockfile {
  packages: Record<string, { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string>; peerDependencies?: Record<string, string>; dev?: boolean }>;
}

/**
 * The lockfile paths ("node_modules/a", "node_modules/a/node_modules/b") of `roots` and
 * everything they depend on, resolved the way Node does: the nearest node_modules up the tree.
 * An optional dependency the lockfile lacks (another platform's) is skipped; a missing
 * required one is an error, since the image would fail at run time.
 */
export function packageClosure(lock: Lockfile, roots: readonly string[]): string[] {
  const seen = new Set<string>();
  const resolve = (from: string, name: string): string | undefined => {
    for (let dir = from; ; ) {
      const candidate = `${dir ? `${dir}/` : ''}node_modules/${name}`;
      if (lock.packages[candidate]) return candidate;
      if (!dir) return undefined;
      const at = dir.lastIndexOf('/node_modules/');
      dir = at < 0 ? '' : dir.slice(0, at);
    }
  };
  const visit = (from: string, name: string, optional: boolean): void => {
    const path = resolve(from, name);
    if (!path) {
      if (optional) return;
      throw new UnresolvedModuleError(`package ${name} (needed by ${from || 'the project'}) is not in package-lock.json`);
    }
    if (seen.has(path)) return;
    seen.add(path);
    const entry = lock.packages[path] ?? {};
    for (const dep of Object.keys(entry.dependencies ?? {})) visit(path, dep, false);
    for (const dep of Object.keys(entry.optionalDependencies ?? {})) visit(path, dep, true);
    // Peers are installed by npm 7+ like dependencies; the lockfile has them where they resolve.
    for (const dep of Object.keys(entry.peerDependencies ?? {})) visit(path, dep, true);
  };
  for (const root of roots) visit('', root, false);
  return [...seen].sort();
}
