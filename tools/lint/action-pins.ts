/**
 * Finds `uses:` references in GitHub workflow and action files that are not pinned to a
 * full commit SHA with the version named in a comment on the same line. A tag or a branch
 * can be moved to other code after anyone reviewed it — aquasecurity/trivy-action's tags
 * were force-pushed to a credential stealer in March 2026 (its issue 541) — while a
 * 40-hex commit SHA names one tree for good. The comment keeps the pin readable and lets
 * Dependabot move SHA and comment together.
 * Pure: text in, findings out.
 */
import { isScalar, LineCounter, parseDocument, visit } from 'yaml';

export type PinProblem = 'not-pinned-by-sha' | 'no-version-comment';

export interface ActionReference {
  line: number;
  uses: string;
}

export interface PinFinding extends ActionReference {
  problem: PinProblem;
}

/** owner/repo[/path]@<40 hex>: an action or a reusable workflow at one commit. */
const SHA_PINNED = /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+(\/[^@\s]+)?@[0-9a-f]{40}$/;
/** docker://image@sha256:<64 hex>: a container action by content. */
const DIGEST_PINNED = /^docker:\/\/[^@\s]+@sha256:[0-9a-f]{64}$/;
/** "v4.1.0", "v4", "0.36.0": the version the SHA is. */
const VERSION_COMMENT = /^\s*v?\d+(\.\d+){0,2}([-+][0-9A-Za-z.-]+)?(\s|$)/;

export interface PinReport {
  /** Every `uses:` found, so a caller can tell "all pinned" from "nothing read". */
  references: ActionReference[];
  findings: PinFinding[];
}

export function checkActionPins(text: string): PinReport {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter });
  if (doc.errors.length > 0) throw new Error(`not valid YAML: ${doc.errors[0]!.message}`);
  const references: ActionReference[] = [];
  const findings: PinFinding[] = [];
  visit(doc, {
    Pair(_, pair) {
      if (!isScalar(pair.key) || pair.key.value !== 'uses' || !isScalar(pair.value)) return;
      const uses = String(pair.value.value);
      const line = pair.value.range ? lineCounter.linePos(pair.value.range[0]).line : 0;
      references.push({ line, uses });
      // An action in this repository is reviewed with the workflow that calls it.
      if (uses.startsWith('./')) return;
      if (!SHA_PINNED.test(uses) && !DIGEST_PINNED.test(uses)) {
        findings.push({ line, uses, problem: 'not-pinned-by-sha' });
      } else if (!VERSION_COMMENT.test(pair.value.comment ?? '')) {
        findings.push({ line, uses, problem: 'no-version-comment' });
      }
    },
  });
  return { references, findings };
}
