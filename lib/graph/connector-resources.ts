import type { AwsResourceAccess } from '../api/connector-resources.js';
import type { PhysicalPlan } from './plan.js';

/** The AWS resources one source or sink operator of a plan declared, and where its code runs. */
export interface PlannedResourceUse {
  /** The vertex whose function runs the operator. */
  readonly vertex: string;
  /** The operator's uid. */
  readonly uid: string;
  readonly role: 'source' | 'sink';
  /**
   * Whether the operator's transactions are committed wherever a checkpoint completes (a sink: every sink's
   * pre-committed transactions, at-least-once ones included, are carried out by whoever completes the checkpoint),
   * not only in its own vertex.
   */
  readonly committed: boolean;
  readonly resources: readonly AwsResourceAccess[];
}

/** The sources and sinks of a plan that declare AWS resources (`resources` on their connector), in plan order. */
export function plannedResourceUses(plan: PhysicalPlan): PlannedResourceUse[] {
  const out: PlannedResourceUse[] = [];
  for (const v of plan.vertices) {
    for (const op of v.operators) {
      const spec = op.node.spec;
      if (spec.kind !== 'source' && spec.kind !== 'sink') continue;
      const resources = spec.connector.resources ?? [];
      if (resources.length > 0) out.push({ vertex: v.id, uid: op.uid, role: spec.kind, committed: spec.kind === 'sink', resources });
      if (spec.kind !== 'source') continue;
      // Operators a source added after itself (`<uid>.dedup`, `<uid>.read`) run in vertices of their own and may use
      // resources of their own (the S3 source reads objects after deduplicating them by key).
      const expanded = spec.connector.expandedResources ?? [];
      if (expanded.length === 0) continue;
      for (const other of plan.vertices) {
        if (other.operators.some((o) => o.uid.startsWith(`${op.uid}.`))) out.push({ vertex: other.id, uid: op.uid, role: 'source', committed: false, resources: expanded });
      }
    }
  }
  return out;
}
