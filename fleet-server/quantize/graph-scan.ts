import {
  AT,
  attr,
  DT,
  dimsOf,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  subgraphsOfAttr,
  type TensorProto,
} from "./onnx-model.js";

/** A graph and where it sits: the main graph, or a subgraph of an If/Loop/Scan node. */
export interface Scope {
  graph: GraphProto;
  /** Human-readable path, e.g. "main" or "main/If_0.then_branch". */
  path: string;
}

/** A constant float tensor: a graph initializer or the `value` of a Constant node. */
export interface ConstDef {
  name: string;
  scope: Scope;
  kind: "initializer" | "constant-node";
  tensor: TensorProto;
  /** The Constant node, for kind "constant-node". */
  node?: NodeProto;
  dims: number[];
  dataType: number;
}

/** A node input that reads a name. Subgraph nodes reading an outer-scope name count too. */
export interface Use {
  node: NodeProto;
  scope: Scope;
  index: number;
}

export interface GraphScan {
  defs: Map<string, ConstDef>;
  /** Names defined in more than one place (shadowing): never rewritten. */
  ambiguous: Set<string>;
  uses: Map<string, Use[]>;
  /** Names that are also graph inputs (overridable initializers) or graph outputs. */
  pinned: Set<string>;
  /** Every name in the model (values and nodes), so generated names never collide. */
  names: Set<string>;
  nodes: { node: NodeProto; scope: Scope }[];
}

/** Walks the main graph and every subgraph (If/Loop/Scan bodies), recording constants and their readers. */
export function scanModel(model: ModelProto): GraphScan {
  const scan: GraphScan = {
    defs: new Map(),
    ambiguous: new Set(),
    uses: new Map(),
    pinned: new Set(),
    names: new Set(),
    nodes: [],
  };
  const define = (def: ConstDef) => {
    if (scan.defs.has(def.name)) scan.ambiguous.add(def.name);
    else scan.defs.set(def.name, def);
  };
  const walk = (graph: GraphProto, path: string) => {
    const scope: Scope = { graph, path };
    for (const v of graph.input ?? []) {
      if (v.name) {
        scan.names.add(v.name);
        scan.pinned.add(v.name);
      }
    }
    for (const v of graph.output ?? []) if (v.name) scan.pinned.add(v.name);
    for (const t of graph.initializer ?? []) {
      if (!t.name) continue;
      scan.names.add(t.name);
      define({
        name: t.name,
        scope,
        kind: "initializer",
        tensor: t,
        dims: dimsOf(t),
        dataType: t.dataType ?? 0,
      });
    }
    for (const node of graph.node ?? []) {
      scan.nodes.push({ node, scope });
      if (node.name) scan.names.add(node.name);
      for (const o of node.output ?? []) if (o) scan.names.add(o);
      (node.input ?? []).forEach((name, index) => {
        if (!name) return;
        const list = scan.uses.get(name) ?? [];
        list.push({ node, scope, index });
        scan.uses.set(name, list);
      });
      const value = node.opType === "Constant" && !node.domain ? attr(node, "value") : undefined;
      if (value?.t && value.type === AT.TENSOR && node.output?.[0]) {
        define({
          name: node.output[0],
          scope,
          kind: "constant-node",
          tensor: value.t,
          node,
          dims: dimsOf(value.t),
          dataType: value.t.dataType ?? 0,
        });
      }
      for (const a of node.attribute ?? []) {
        for (const g of subgraphsOfAttr(a)) walk(g, `${path}/${node.name || node.opType}.${a.name}`);
      }
    }
  };
  if (model.graph) walk(model.graph, "main");
  return scan;
}

export function isFloatWeight(def: ConstDef): boolean {
  return def.dataType === DT.FLOAT && def.dims.length >= 2;
}

/** Unique-name generator over the model's names; state lives in the caller's scan. */
export function uniqueName(scan: GraphScan, base: string): string {
  let name = base;
  for (let i = 1; scan.names.has(name); i++) name = `${base}_${i}`;
  scan.names.add(name);
  return name;
}

export function nodeLabel(node: NodeProto): string {
  return node.name || `${node.opType}(${node.output?.[0] ?? "?"})`;
}
