import { totalmem } from 'node:os';

const MiB = 2 ** 20;

/**
 * The memory this process may use, in bytes: `--memory-limit` (MiB) if given, else the container's
 * cgroup limit, else the machine's memory. Both the index's budget and the connections' room are
 * shares of it.
 */
export function memoryLimit(configuredMiB: number | undefined): number {
  if (configuredMiB !== undefined) return configuredMiB * MiB;
  const constrained = process.constrainedMemory?.() ?? 0;
  // Without a limit, cgroups report the largest number they can.
  return constrained > 0 && constrained < totalmem() ? constrained : totalmem();
}
