import { Stack, Validations, type CfnElement } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type { IConstruct } from 'constructs';

/** Acknowledges cdk-nag findings on a construct and its children, each with the reason it is acceptable here. */
export function acknowledge(scope: IConstruct, findings: readonly { readonly id: string; readonly reason: string }[]): void {
  for (const f of findings) Validations.of(scope).acknowledge({ id: f.id, reason: f.reason });
}

/** How cdk-nag writes `Fn::GetAtt <resource>.<attribute>` inside a finding id, e.g. `<BucketABC123.Arn>`. */
export function nagRef(resource: IConstruct, attribute = 'Arn'): string {
  const element = (resource.node.defaultChild ?? resource) as CfnElement;
  return `<${Stack.of(resource).resolve(element.logicalId) as string}.${attribute}>`;
}

/** A resolved CloudFormation value written as cdk-nag writes it inside a finding id (`arn:<AWS::Partition>:s3:::b/*`). */
export function nagFlatten(value: unknown): string {
  if (value === undefined) return '';
  if (typeof value === 'string') return value.replace(/\$\{/g, '<').replace(/\}/g, '>');
  const node = value as Record<string, unknown>;
  if (Array.isArray(node['Fn::Join'])) {
    const [delimiter, items] = node['Fn::Join'] as [string, unknown[]];
    return items.map(nagFlatten).join(delimiter);
  }
  if (node['Fn::Sub'] !== undefined) return nagFlatten(node['Fn::Sub']);
  if (Array.isArray(node['Fn::GetAtt'])) {
    const [resource, attribute] = node['Fn::GetAtt'] as [unknown, unknown];
    return `<${nagFlatten(resource)}.${nagFlatten(attribute)}>`;
  }
  if (node['Fn::ImportValue'] !== undefined) return nagFlatten(node['Fn::ImportValue']);
  if (node.Ref !== undefined) return `<${nagFlatten(node.Ref)}>`;
  return JSON.stringify(value);
}

/** A resolved IAM policy statement, as far as the wildcard rule reads it. */
interface ResolvedStatement {
  readonly Effect?: string;
  readonly Action?: string | readonly string[];
  readonly Resource?: unknown;
}

/** The AwsSolutions-IAM5 (wildcard permissions) finding ids of resolved statements, as cdk-nag names them. */
export function wildcardFindings(statements: readonly ResolvedStatement[]): string[] {
  const ids = new Set<string>();
  for (const st of statements) {
    if (st.Effect !== 'Allow') continue;
    for (const action of [st.Action ?? []].flat()) if (action.includes('*')) ids.add(`AwsSolutions-IAM5[Action::${action}]`);
    for (const resource of [st.Resource ?? []].flat().map(nagFlatten)) if (resource.includes('*')) ids.add(`AwsSolutions-IAM5[Resource::${resource}]`);
  }
  return [...ids];
}

/**
 * Runs `grant`, then acknowledges with `reason` the wildcard findings of the statements it added to `role`'s default
 * policy: object patterns under a prefix, index ARNs, and the action groups a construct's own grant* names. A bare
 * `*` resource is never acknowledged, so cdk-nag still reports one.
 */
export function acknowledgeGrant(role: iam.IRole, reason: string, grant: () => void): void {
  const statements = () => {
    const policy = role.node.tryFindChild('DefaultPolicy') as iam.Policy | undefined;
    return policy ? ((Stack.of(role).resolve(policy.document.toJSON()) as { Statement?: ResolvedStatement[] } | undefined)?.Statement ?? []) : [];
  };
  const before = statements().length;
  grant();
  const ids = wildcardFindings(statements().slice(before)).filter((id) => id !== 'AwsSolutions-IAM5[Resource::*]');
  acknowledge(role, ids.map((id) => ({ id, reason })));
}
