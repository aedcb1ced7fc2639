import type { LabState } from "../lab/lab-state.ts";
export function explainLab(_s: LabState): string { return ""; }
