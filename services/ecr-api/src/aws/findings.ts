import { paginateDescribeImageScanFindings, type ECRClient, type ImageIdentifier, type ImageScanStatus } from '@aws-sdk/client-ecr';
import type { ScanFindings } from '../schemas/image.js';
import { rfc3339 } from './repositories.js';

/** AWS SDK v3 camelCase (and Dates) → the original's Go JSON: PascalCase keys, RFC 3339 times. */
function pascalCase(value: unknown): unknown {
  if (value instanceof Date) return rfc3339(value);
  if (Array.isArray(value)) return value.map(pascalCase);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k.charAt(0).toUpperCase() + k.slice(1), pascalCase(v)]));
  }
  return value;
}

const counts = (c: Record<string, number | undefined> | undefined) =>
  Object.fromEntries(Object.entries(c ?? {}).filter((e): e is [string, number] => typeof e[1] === 'number'));

/** Every page of an image's scan findings (1000 a page), merged; the scan status of the first. */
export async function describeFindings(
  ecr: ECRClient,
  repositoryName: string,
  imageId: ImageIdentifier,
): Promise<{
  findings: ScanFindings;
  status: ImageScanStatus | undefined;
  imageId: ImageIdentifier | undefined;
  registryId: string | undefined;
}> {
  const findings: ScanFindings = { FindingSeverityCounts: {}, Findings: [] };
  let status: ImageScanStatus | undefined;
  let answeredId: ImageIdentifier | undefined;
  let registryId: string | undefined;
  let first = true;
  for await (const page of paginateDescribeImageScanFindings({ client: ecr, pageSize: 1000 }, { repositoryName, imageId })) {
    const f = page.imageScanFindings;
    if (first) {
      first = false;
      status = page.imageScanStatus;
      answeredId = page.imageId;
      registryId = page.registryId;
      findings.FindingSeverityCounts = counts(f?.findingSeverityCounts);
      const completed = rfc3339(f?.imageScanCompletedAt);
      const updated = rfc3339(f?.vulnerabilitySourceUpdatedAt);
      if (completed) findings.ImageScanCompletedAt = completed;
      if (updated) findings.VulnerabilitySourceUpdatedAt = updated;
    }
    for (const x of f?.findings ?? []) {
      findings.Findings.push({
        Attributes: (x.attributes ?? []).map((a) => ({ Key: a.key ?? '', Value: a.value ?? '' })),
        ...(x.description !== undefined ? { Description: x.description } : {}),
        ...(x.name !== undefined ? { Name: x.name } : {}),
        ...(x.severity !== undefined ? { Severity: x.severity } : {}),
        ...(x.uri !== undefined ? { Uri: x.uri } : {}),
      });
    }
    if (f?.enhancedFindings?.length) {
      findings.EnhancedFindings = [...(findings.EnhancedFindings ?? []), ...(pascalCase(f.enhancedFindings) as Record<string, unknown>[])];
    }
  }
  // Field order as the original's (alphabetical): EnhancedFindings first when present.
  const { EnhancedFindings, ...rest } = findings;
  return { findings: EnhancedFindings ? { EnhancedFindings, ...rest } : rest, status, imageId: answeredId, registryId };
}
