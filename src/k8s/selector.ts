// Label selectors: the map form Services use and the matchLabels/matchExpressions form of
// Deployments. Source: k8s.io/apimachinery pkg/labels/selector.go and
// pkg/apis/meta/v1/helpers.go LabelSelectorAsSelector (all requirements ANDed; an empty
// LabelSelector matches everything).

import type { LabelSelector } from "./types.ts";

/**
 * A Service's selector. Kubernetes treats a Service without a selector as "endpoints managed
 * elsewhere" (the endpoints controller skips it), and an empty map serialises as absent, so both
 * select nothing here.
 */
export function serviceSelects(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  if (!selector || Object.keys(selector).length === 0) return false;
  return mapSelectorMatches(selector, labels);
}

/** Every key of `selector` is present in `labels` with the same value. */
export function mapSelectorMatches(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  const have = labels ?? {};
  return Object.entries(selector).every(([key, value]) => Object.hasOwn(have, key) && have[key] === value);
}

export function labelSelectorMatches(selector: LabelSelector, labels: Record<string, string> | undefined): boolean {
  const have = labels ?? {};
  if (selector.matchLabels && !mapSelectorMatches(selector.matchLabels, have)) return false;
  for (const expression of selector.matchExpressions ?? []) {
    const present = Object.hasOwn(have, expression.key);
    const values = expression.values ?? [];
    switch (expression.operator) {
      case "In":
        if (!present || !values.includes(have[expression.key]!)) return false;
        break;
      case "NotIn":
        if (present && values.includes(have[expression.key]!)) return false;
        break;
      case "Exists":
        if (!present) return false;
        break;
      case "DoesNotExist":
        if (present) return false;
        break;
    }
  }
  return true;
}

/** `app=web,tier=front`: the form kubectl prints and `-l` takes. */
export function formatSelector(selector: LabelSelector): string {
  const parts = Object.entries(selector.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of selector.matchExpressions ?? []) {
    if (e.operator === "Exists") parts.push(e.key);
    else if (e.operator === "DoesNotExist") parts.push(`!${e.key}`);
    else parts.push(`${e.key} ${e.operator === "In" ? "in" : "notin"} (${(e.values ?? []).join(",")})`);
  }
  return parts.join(",");
}
