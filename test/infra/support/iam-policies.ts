/** Reading a synthesized stack's IAM policies back, one allowed action and resource at a time, for least-privilege assertions. */
import type { Stack } from 'aws-cdk-lib';
import type { Template } from 'aws-cdk-lib/assertions';

/** One action a role's policies allow on one resource (resolved, as JSON), with the statement's condition. */
export interface Allowed {
  readonly action: string;
  readonly resource: string;
  readonly condition?: Record<string, Record<string, unknown>>;
}

/** Everything the IAM policies attached to a function's (or state machine's) role allow, one entry per action and resource. */
export function allowedFor(s: Stack, t: Template, role: { roleName: string }): Allowed[] {
  const policies = Object.values(t.findResources('AWS::IAM::Policy', { Properties: { Roles: [s.resolve(role.roleName)] } })) as {
    Properties: { PolicyDocument: { Statement: { Effect: string; Action: string | string[]; Resource: unknown; Condition?: Allowed['condition'] }[] } };
  }[];
  return policies.flatMap((p) =>
    p.Properties.PolicyDocument.Statement.filter((st) => st.Effect === 'Allow').flatMap((st) =>
      [st.Action].flat().flatMap((action) =>
        [st.Resource].flat().map((resource) => ({ action, resource: JSON.stringify(resource), ...(st.Condition ? { condition: st.Condition } : {}) })),
      ),
    ),
  );
}

/** A deploy-time value as `allowedFor` writes resources. */
export const json = (s: Stack, value: unknown) => JSON.stringify(s.resolve(value));

/** Whether IAM's StringLike (`*` any run, `?` any one character) matches `value` with `pattern`. */
export function stringLike(pattern: string, value: string): boolean {
  const source = [...pattern].map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('');
  return new RegExp(`^${source}$`, 's').test(value);
}
