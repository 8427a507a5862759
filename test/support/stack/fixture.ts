import { buildAll, type ImageSet } from './build';
import { docker } from './docker';
import { Stack } from './stack';
import type { ComposeSpec } from './compose-config';

/**
 * The image tag the suite builds and runs. NONSTOP_TEST_TAG lets two checkouts on one engine
 * (e.g. a worktree beside the main one) test their own code without overwriting each other's.
 */
export const TEST_TAG = process.env.NONSTOP_TEST_TAG ?? 'test';

let images: Promise<ImageSet> | undefined;

/** Builds the images once per test process (Docker's layer cache makes repeats cheap). */
export function testImages(): Promise<ImageSet> {
  images ??= buildAll(TEST_TAG);
  return images;
}

/** Builds the images if needed and brings a fresh stack up. */
export async function upStack(env: Record<string, string> = {}, adjust?: (spec: ComposeSpec) => void): Promise<Stack> {
  return Stack.up(docker(), await testImages(), { tag: TEST_TAG, env, ...(adjust ? { adjust } : {}) });
}
