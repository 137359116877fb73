// What the page reads is checked against the runtime's published JSON Schemas (docs/schemas, served at
// /schema/NAME): the subset of JSON Schema that pydantic writes. A message that fails is skipped and counted,
// never drawn. No libraries: the box is offline.
"use strict";

function schemaProblem(value, schema, root, path) {
  if (schema.$ref) return schemaProblem(value, root.$defs[schema.$ref.split("/").pop()], root, path);
  if (schema.anyOf) {
    return schema.anyOf.every((s) => schemaProblem(value, s, root, path)) ? `${path}: matches none of its forms` : null;
  }
  if (schema.const !== undefined && value !== schema.const) return `${path}: is not ${JSON.stringify(schema.const)}`;
  if (schema.enum && !schema.enum.includes(value)) return `${path}: ${JSON.stringify(value)} is not allowed`;
  const types = schema.type === undefined ? [] : [].concat(schema.type);
  if (types.length && !types.some((t) => hasType(value, t))) return `${path}: is not ${types.join(" or ")}`;
  if (typeof value === "number") return numberProblem(value, schema, path);
  if (Array.isArray(value)) return arrayProblem(value, schema, root, path);
  if (value !== null && typeof value === "object") return objectProblem(value, schema, root, path);
  return null;
}

function hasType(value, type) {
  switch (type) {
    case "null": return value === null;
    case "boolean": return typeof value === "boolean";
    case "integer": return Number.isInteger(value);
    case "number": return typeof value === "number" && Number.isFinite(value);
    case "string": return typeof value === "string";
    case "array": return Array.isArray(value);
    case "object": return value !== null && typeof value === "object" && !Array.isArray(value);
    default: return true;
  }
}

function numberProblem(value, schema, path) {
  if (schema.minimum !== undefined && value < schema.minimum) return `${path}: below ${schema.minimum}`;
  if (schema.maximum !== undefined && value > schema.maximum) return `${path}: above ${schema.maximum}`;
  if (schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum) return `${path}: too small`;
  if (schema.exclusiveMaximum !== undefined && value >= schema.exclusiveMaximum) return `${path}: too large`;
  return null;
}

function arrayProblem(value, schema, root, path) {
  if (schema.minItems !== undefined && value.length < schema.minItems) return `${path}: too few items`;
  if (schema.maxItems !== undefined && value.length > schema.maxItems) return `${path}: too many items`;
  for (let i = 0; i < value.length; i++) {
    const item = (schema.prefixItems && schema.prefixItems[i]) || schema.items;
    const problem = item ? schemaProblem(value[i], item, root, `${path}[${i}]`) : null;
    if (problem) return problem;
  }
  return null;
}

function objectProblem(value, schema, root, path) {
  for (const key of schema.required || []) {
    if (!(key in value)) return `${path}.${key}: missing`;
  }
  for (const [key, item] of Object.entries(value)) {
    const declared = schema.properties && schema.properties[key];
    const extra = typeof schema.additionalProperties === "object" ? schema.additionalProperties : null;
    if (schema.additionalProperties === false && !declared) return `${path}.${key}: not allowed`;
    const problem = declared || extra ? schemaProblem(item, declared || extra, root, `${path}.${key}`) : null;
    if (problem) return problem;
  }
  return null;
}

// The schemas the page checks against, fetched once from the display (which serves the runtime's contracts).
const schemas = {};
async function loadSchemas(names, withToken) {
  await Promise.all(names.map(async (name) => {
    const response = await fetch(withToken(`schema/${name}`));
    if (response.ok) schemas[name] = await response.json();
  }));
  return schemas;
}

// The first problem of a message against its schema, or null; a schema not loaded yet passes nothing.
function messageProblem(name, value) {
  const schema = schemas[name];
  return schema ? schemaProblem(value, schema, schema, name) : `${name}: schema not loaded`;
}
