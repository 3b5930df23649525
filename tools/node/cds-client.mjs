// A third-party CDS Hooks client for the interoperability tests (tests/test_interop_medplum.py):
// @medplum/core's own CDS client, not code of ours, drives a whole exchange against any CDS service.
//
// Why Medplum: it is an independent implementation of the client side of CDS Hooks 2.0 (discovery,
// prefetch template resolution against a FHIR server, the call), so a service that only works with
// our own simulator would fail here. What it does, in order:
//   1. MedplumClient.getCdsServices()      GET  {cds}                      (discovery)
//   2. buildCdsRequest(...)                GET  {fhir}/Type/id and {fhir}/Type?query per prefetch
//                                          template (Medplum's own token substitution)
//   3. MedplumClient.callCdsService(...)   POST {cds}/{service id}
// Medplum quirks the service must cope with: a template with an unresolved token is sent as `null`;
// a read that answers 404 throws, so no call is made (this script then exits 3 and says so).
//
// Usage:
//   node --experimental-websocket cds-client.mjs --fhir BASE --cds DISCOVERY_URL --patient ID
//        [--hook patient-view] [--service ID] [--user Practitioner/ID] [--context-file FILE]
//        [--fhir-token TOKEN]
//   --fhir        FHIR R4 base URL, e.g. http://127.0.0.1:8090/fhir
//   --cds         discovery URL, e.g. http://127.0.0.1:8100/cds-services
//   --context-file  JSON object merged into the hook context (draftOrders, selections, ...)
//   --fhir-token  bearer token Medplum sends to the FHIR server (never to the CDS service)
// Output (stdout, one JSON document): {"service": {...}, "request": {...}, "response": {...}}
// Exit status: 0 on a 2xx answer; 1 when the service answered an error (its OperationOutcome is
// printed as "error"); 2 on bad arguments; 3 when Medplum could not build the request.
// (--experimental-websocket: Medplum 5 expects a global WebSocket, which Node 20 only has behind it.)

import { readFileSync } from 'node:fs';
import { buildCdsRequest, MedplumClient } from '@medplum/core';

function usage(message) {
  process.stderr.write(`cds-client.mjs: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = { hook: 'patient-view', user: 'Practitioner/dr-1' };
  const names = new Set(['fhir', 'cds', 'patient', 'hook', 'service', 'user', 'context-file', 'fhir-token']);
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i];
    if (!flag.startsWith('--') || !names.has(flag.slice(2))) usage(`unknown argument ${flag}`);
    if (i + 1 >= argv.length) usage(`${flag} needs a value`);
    args[flag.slice(2)] = argv[i + 1];
  }
  for (const required of ['fhir', 'cds', 'patient']) {
    if (!args[required]) usage(`--${required} is required`);
  }
  return args;
}

function splitFhirBase(fhir) {
  // MedplumClient wants a server base plus a FHIR path relative to it.
  const url = new URL(fhir);
  const path = url.pathname.replace(/^\/+|\/+$/g, '');
  return { baseUrl: `${url.protocol}//${url.host}/`, fhirUrlPath: path };
}

function errorBody(err) {
  return err?.outcome ?? { message: String(err?.message ?? err) };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const { baseUrl, fhirUrlPath } = splitFhirBase(args.fhir);
  const medplum = new MedplumClient({
    baseUrl,
    fhirUrlPath,
    cdsServicesUrl: args.cds,
    fetch,
    maxRetries: 0, // a retried 5xx would hide exactly what the tests look for
    ...(args['fhir-token'] ? { accessToken: args['fhir-token'] } : {}),
  });

  const discovery = await medplum.getCdsServices();
  const service = discovery.services.find(
    (s) => s.hook === args.hook && (args.service === undefined || s.id === args.service)
  );
  if (!service) {
    process.stdout.write(JSON.stringify({ error: `no service for hook ${args.hook}`, discovery }) + '\n');
    process.exit(3);
  }

  const extra = args['context-file'] ? JSON.parse(readFileSync(args['context-file'], 'utf8')) : {};
  const context = { userId: args.user, patientId: args.patient, ...extra };
  const [userType, userId] = args.user.split('/');
  let request;
  try {
    request = await buildCdsRequest(medplum, { resourceType: userType, id: userId }, service, context);
  } catch (err) {
    process.stdout.write(JSON.stringify({ service, stage: 'prefetch', error: errorBody(err) }) + '\n');
    process.exit(3);
  }

  try {
    const response = await medplum.callCdsService(service.id, request);
    process.stdout.write(JSON.stringify({ service, request, response }) + '\n');
  } catch (err) {
    process.stdout.write(JSON.stringify({ service, request, stage: 'call', error: errorBody(err) }) + '\n');
    process.exit(1);
  }
}

main().catch((err) => {
  process.stderr.write(`cds-client.mjs: ${err?.stack ?? err}\n`);
  process.exit(3);
});
