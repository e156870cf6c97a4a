// The Application as the API answers it, and what the console derives from its status.

import type { ApiObject } from "./api";

export interface ComponentSpec {
  name: string;
  image: string;
  replicas?: number;
  command?: string[];
  args?: string[];
  env?: { name: string; value?: string }[];
  ports?: { name?: string; port: number }[];
  resources?: { limits?: { cpu?: string; memory?: string }; requests?: { cpu?: string; memory?: string } };
  probes?: Record<string, unknown>;
  [key: string]: unknown;
}

export interface ApplicationSpec {
  environment: string;
  components: ComponentSpec[];
  [key: string]: unknown;
}

export interface ComponentStatus {
  name: string;
  desired: number;
  updated: number;
  updatedReady: number;
  ready: number;
  phase: "progressing" | "complete" | "deadlineExceeded";
  message?: string;
  service?: { address: string; dnsName: string };
}

export interface InstanceStatus {
  name: string;
  component: string;
  revision: number;
  state: string;
  ready?: boolean;
  reason?: string;
  message?: string;
  exitCode?: number;
  ip?: string;
  restarts: number;
  startedMicros?: number;
}

export interface WorkloadEvent {
  timeMicros: number;
  type: "normal" | "warning";
  reason: string;
  message: string;
  component?: string;
  instance?: string;
}

export interface ApplicationStatus {
  cluster?: string;
  revision?: number;
  components?: ComponentStatus[];
  instances?: InstanceStatus[];
  events?: WorkloadEvent[];
  warnings?: string[];
}

export type Application = ApiObject<ApplicationSpec, ApplicationStatus>;

export type Phase = "progressing" | "complete" | "deadlineExceeded" | "unknown";

export function phaseOf(status: ApplicationStatus | undefined): Phase {
  const components = status?.components ?? [];
  if (components.length === 0) return "unknown";
  if (components.some((c) => c.phase === "deadlineExceeded")) return "deadlineExceeded";
  if (components.every((c) => c.phase === "complete")) return "complete";
  return "progressing";
}

export function phaseTone(phase: Phase): "ok" | "warn" | "bad" | "idle" {
  return phase === "complete" ? "ok" : phase === "progressing" ? "warn" : phase === "deadlineExceeded" ? "bad" : "idle";
}

export function readyCounts(status: ApplicationStatus | undefined): string {
  const components = status?.components ?? [];
  if (components.length === 0) return "-";
  const ready = components.reduce((n, c) => n + c.ready, 0);
  const desired = components.reduce((n, c) => n + c.desired, 0);
  return `${ready}/${desired}`;
}

export const CHANGE_CAUSE = "flotilla.io/change-cause";
