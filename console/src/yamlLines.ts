// Where a field is in a YAML document: the line of the value at a dotted path such as
// `spec.components[0].image`, so the server's errors can be shown at their line.

import { LineCounter, parseDocument } from "yaml";

export function pathSegments(path: string): (string | number)[] {
  const segments: (string | number)[] = [];
  for (const part of path.split(".").filter(Boolean)) {
    const match = part.match(/^([^[]*)((?:\[\d+\])*)$/);
    if (!match) {
      segments.push(part);
      continue;
    }
    if (match[1]) segments.push(match[1]);
    for (const index of match[2].matchAll(/\[(\d+)\]/g)) segments.push(Number(index[1]));
  }
  return segments;
}

/// The 1-based line of `path` in `text`, or of its nearest parent that is there.
export function lineOf(text: string, path: string): number | undefined {
  const counter = new LineCounter();
  const document = parseDocument(text, { lineCounter: counter });
  const segments = pathSegments(path);
  for (let length = segments.length; length > 0; length--) {
    const node = document.getIn(segments.slice(0, length), true) as { range?: [number, number, number] } | undefined;
    if (node && typeof node === "object" && node.range) return counter.linePos(node.range[0]).line;
  }
  return undefined;
}
