#!/usr/bin/env node
// A head written with the Dolittle JavaScript SDK 17.0.1 (Contracts 5.4), which the annals
// end-to-end tests (tests/src/sdk17.rs) start and steer: commands come in on stdin, one JSON
// object per line, and everything the head sees or answers goes out on stdout, one JSON
// object per line. The SDK's own log goes to stderr. Plain CommonJS for Node 20: the SDK's
// decorators are called as functions.
//
// Environment
//   ANNALS_HOST           runtime host (default 127.0.0.1)
//   ANNALS_PORT           the runtime's legacy (Contracts 5.4) port (required)
//   ANNALS_TENANT         the tenant of every tenant-scoped call (required)
//   ANNALS_MICROSERVICE   this head's microservice id (default MICROSERVICE below)
//   ANNALS_PUBLIC_FILTER  "1": also register the public filter PF (partition = event source)
//   ANNALS_SUBSCRIBE      {"microservice","tenant","stream","partition","scope"}: subscribe
//                         ANNALS_TENANT through the event horizon to that producer stream and
//                         partition into `scope`, and handle E1 there with the scoped handler SH
//   ANNALS_LOG_LEVEL      level of the SDK's log on stderr (default info)
//   ANNALS_REFUSAL_LIMIT_MS  how long the runtime may keep refusing a registration before the
//                         head gives up with a fatal line (default 20000; 0: never)
//
// Fixed ids (also printed in the ready line under "ids"):
//   E1           5d17e1e1-0000-4000-8000-000000000001  event type, name "annals-sdk17-event"
//   ScoreAdded   5d17a5a5-0000-4000-8000-000000000002  event type applied by the Score root
//   Score        5d17a660-0000-4000-8000-000000000003  aggregate root type
//   H1           5d17b1b1-0000-4000-8000-000000000004  partitioned event handler on E1
//   F1           5d17f1f1-0000-4000-8000-000000000005  private unpartitioned filter (E1 only)
//   PF           5d17f2f2-0000-4000-8000-000000000006  public partitioned filter (optional)
//   P1           5d17c1c1-0000-4000-8000-000000000007  projection on E1, keyed by event source
//   SH           5d17d1d1-0000-4000-8000-000000000008  scoped event handler (optional)
//   MICROSERVICE 5d170000-0000-4000-8000-0000000000a1  default microservice id
//
// Printed on stdout
//   {"ready":true,"ids":{...},"names":{"E1":"annals-sdk17-event"},"microservice":..,"tenant":..}
//       once the client is built (its processors then register in the background)
//   {"handled":{"sequenceNumber":N,"eventSourceId":"..","content":{..},"partitionId":".."}}
//       per E1 event H1 handles. partitionId is the stream partition the runtime sent with
//       the event: the SDK's EventContext does not carry it, so a small hook reads it off the
//       request (see capturePartitionIds)
//   {"scoped":{...same fields...}}        per event SH handles
//   {"filtered":{"sequenceNumber":N,"eventSourceId":"..","included":B,"eventType":T}}
//       per event of any type the runtime shows F1 (its log, in order); included is true for
//       E1 only; eventType is "E1", "ScoreAdded" or null (a type this head does not know)
//   {"publicFiltered":{"sequenceNumber":N,"eventSourceId":"..","eventType":T}}
//       per event PF sees (all are included, partition = event source)
//   {"projected":{"key":"..","sequenceNumber":N,"createdFromInitialState":B}}  per P1 on() call
//   {"id":N,"error":".."}                 a command failed; the head goes on
//   {"fatal":".."}                        the head cannot go on; it exits 1
//
// Commands on stdin, and their answers
//   {"id":1,"commit":[{"eventSourceId":"<guid>","content":{..},"public":false},..]}
//       one element: commit()/commitPublic() of one E1 event; several: one commit of all
//       -> {"id":1,"committed":[{"sequenceNumber":N,"eventSourceId":".."},..]}
//   {"id":2,"aggregate":{"eventSourceId":"<guid>","add":[1,2,3]}}
//       Score rehydrated from the runtime (see fetchScore), one ScoreAdded applied per number,
//       committed as one CommitForAggregate
//       -> {"id":2,"done":true,"version":V}  (V: the root's version after applying)
//   {"id":3,"reload":{"eventSourceId":"<guid>"}}
//       a fresh Score, nothing applied
//       -> {"id":3,"total":T,"count":C,"version":V}  V is AggregateRoot.version: the number of
//          events re-applied, i.e. the version the next applied event would get
//   {"id":4,"projection":{"key":"<guid>"}}
//       P1's state for the key from the projection store of ANNALS_TENANT
//       -> {"id":4,"state":{"count":N,"last":{..}},"createdFromInitialState":B,"key":".."}
//   {"id":5,"exit":true}  -> {"id":5,"bye":true}, then the client is cancelled and the head
//       exits 0. The head also exits 0 when stdin closes (after the pending commands) or on
//       SIGTERM/SIGINT.

'use strict';

const readline = require('readline');
const winston = require('winston');
const { Client } = require('@dolittle/sdk');
const { AggregateRoot, aggregateRoot, on: aggregateOn } = require('@dolittle/sdk.aggregates');
const { AggregateRootId, EventSourceId, EventType, EventTypeId } = require('@dolittle/sdk.events');
const { PartitionedFilterResult } = require('@dolittle/sdk.events.filtering');
const handling = require('@dolittle/sdk.events.handling');
const { CurrentStateType } = require('@dolittle/sdk.projections');
const { guids } = require('@dolittle/sdk.protobuf');
const { CancellationSource } = require('@dolittle/sdk.resilience');
const { ClientProcessor } = require('@dolittle/sdk.services');

const IDS = {
    E1: '5d17e1e1-0000-4000-8000-000000000001',
    ScoreAdded: '5d17a5a5-0000-4000-8000-000000000002',
    Score: '5d17a660-0000-4000-8000-000000000003',
    H1: '5d17b1b1-0000-4000-8000-000000000004',
    F1: '5d17f1f1-0000-4000-8000-000000000005',
    PF: '5d17f2f2-0000-4000-8000-000000000006',
    P1: '5d17c1c1-0000-4000-8000-000000000007',
    SH: '5d17d1d1-0000-4000-8000-000000000008',
};
const E1_NAME = 'annals-sdk17-event';
const MICROSERVICE = '5d170000-0000-4000-8000-0000000000a1';
// A processor whose registration the runtime keeps refusing this long is a fatal error
// (ANNALS_REFUSAL_LIMIT_MS overrides it; 0: never).
const REFUSED_REGISTRATION_LIMIT_MS = process.env.ANNALS_REFUSAL_LIMIT_MS === undefined
    ? 20000 : Number(process.env.ANNALS_REFUSAL_LIMIT_MS);

// ---- output -------------------------------------------------------------------------------

// Stdout carries our JSON lines only; anything that would print to it goes to stderr.
const stdoutWrite = process.stdout.write.bind(process.stdout);
console.log = console.info = console.debug = (...args) => console.error(...args);

function emit(object) {
    stdoutWrite(`${JSON.stringify(object)}\n`);
}

function fatal(message) {
    emit({ fatal: String(message) });
    process.exit(1);
}

const logger = winston.createLogger({
    level: process.env.ANNALS_LOG_LEVEL || 'info',
    format: winston.format.combine(
        winston.format.timestamp(),
        winston.format.printf(info => `${info.timestamp} ${info.level} ${info.message}`)),
    transports: [
        new winston.transports.Console({ stderrLevels: Object.keys(winston.config.npm.levels) }),
    ],
});

// ---- environment --------------------------------------------------------------------------

function required(name) {
    const value = process.env[name];
    if (!value) fatal(`${name} is not set`);
    return value;
}

const HOST = process.env.ANNALS_HOST || '127.0.0.1';
const PORT = Number(required('ANNALS_PORT'));
const TENANT = required('ANNALS_TENANT');
const MICROSERVICE_ID = process.env.ANNALS_MICROSERVICE || MICROSERVICE;
const PUBLIC_FILTER = process.env.ANNALS_PUBLIC_FILTER === '1';
let SUBSCRIBE;
try {
    SUBSCRIBE = process.env.ANNALS_SUBSCRIBE ? JSON.parse(process.env.ANNALS_SUBSCRIBE) : undefined;
} catch (error) {
    fatal(`ANNALS_SUBSCRIBE is not JSON: ${error.message}`);
}
if (!Number.isInteger(PORT) || PORT <= 0) fatal(`ANNALS_PORT is not a port: ${process.env.ANNALS_PORT}`);

// ---- event types and the Score aggregate root ---------------------------------------------

// Classes associated with the event types: the SDK hands event content to handlers and
// filters as instances of them, which is how the filters tell the types apart.
class E1Event {}
class ScoreAddedEvent {}
const E1_TYPE = new EventType(EventTypeId.from(IDS.E1));
const SCORE_ADDED_TYPE = new EventType(EventTypeId.from(IDS.ScoreAdded));

function eventTypeName(event) {
    if (event instanceof E1Event) return 'E1';
    if (event instanceof ScoreAddedEvent) return 'ScoreAdded';
    return null;
}

// Score folds ScoreAdded {amount} into {total, count}. The SDK calls the on-method only while
// re-applying committed events when a root is fetched, not on apply().
class Score extends AggregateRoot {
    constructor(eventSourceId) {
        super(eventSourceId);
        this.total = 0;
        this.count = 0;
    }

    onScoreAdded(event) {
        this.total += event.amount;
        this.count += 1;
    }
}
// What @aggregateRoot(...) and @on(...) would do in TypeScript.
aggregateRoot(IDS.Score)(Score);
aggregateOn(IDS.ScoreAdded)(Score.prototype, 'onScoreAdded',
    Object.getOwnPropertyDescriptor(Score.prototype, 'onScoreAdded'));

// P1's read model; its initial state is what the constructor makes.
class P1State {
    constructor() {
        this.count = 0;
        this.last = null;
    }
}

// ---- hooks into the SDK -------------------------------------------------------------------

// The partition of the event an event handler is handling. The SDK's EventContext lacks it,
// so the processor's handle() is wrapped to read it off the runtime's request first; the
// SDK calls our handler method synchronously from there, so it sees the right value.
let currentPartitionId = null;
function capturePartitionIds() {
    const processor = handling.internal.EventHandlerProcessor.prototype;
    const handle = processor.handle;
    processor.handle = function (request, executionContext) {
        const event = request.getEvent();
        const partition = event && event.getPartitionid();
        currentPartitionId = partition ? guids.toSDK(partition).toString() : null;
        return handle.call(this, request, executionContext);
    };
}

// The SDK retries a refused registration every second forever and says nothing. This logs
// each refusal and success on stderr, and makes a refusal that lasts REFUSED_REGISTRATION_LIMIT_MS
// without a success in between fatal. Errors of the connection (runtime down) do not count.
function watchRegistrations() {
    const register = ClientProcessor.prototype.register;
    ClientProcessor.prototype.register = function (cancellation) {
        if (!this.annalsWatched) {
            this.annalsWatched = true;
            const getFailure = this.getFailureFromRegisterResponse;
            let refusedSince = null;
            this.getFailureFromRegisterResponse = response => {
                const failure = getFailure.call(this, response);
                const what = `${this._kind} ${this._identifier}`;
                if (!failure) {
                    refusedSince = null;
                    logger.info(`${what} registered`);
                } else {
                    const reason = `${failure.getReason()}`;
                    logger.warn(`${what} registration refused: ${reason}`);
                    refusedSince = refusedSince || Date.now();
                    if (REFUSED_REGISTRATION_LIMIT_MS > 0
                        && Date.now() - refusedSince > REFUSED_REGISTRATION_LIMIT_MS) {
                        fatal(`the runtime keeps refusing to register ${what}: ${reason}`);
                    }
                }
                return failure;
            };
        }
        return register.call(this, cancellation);
    };
}

capturePartitionIds();
watchRegistrations();

// ---- the client ---------------------------------------------------------------------------

// What a handler prints for one event.
function eventLine(event, context) {
    return {
        sequenceNumber: context.sequenceNumber,
        eventSourceId: context.eventSourceId.toString(),
        content: event,
        partitionId: currentPartitionId,
    };
}

const cancellationSource = new CancellationSource();
let client;
try {
    let builder = Client
        .forMicroservice(MICROSERVICE_ID)
        .withRuntimeOn(HOST, PORT)
        .withLogging(logger)
        .withCancellation(cancellationSource.cancellation)
        .withEventTypes(types => {
            types.associate(E1Event, E1_TYPE);
            types.associate(ScoreAddedEvent, SCORE_ADDED_TYPE);
        })
        .withEventHandlers(handlers => {
            handlers.createEventHandler(IDS.H1, h => h
                .partitioned()
                .handle(E1_TYPE, (event, context) => emit({ handled: eventLine(event, context) })));
            if (SUBSCRIBE) {
                handlers.createEventHandler(IDS.SH, h => h
                    .inScope(SUBSCRIBE.scope)
                    .partitioned()
                    .handle(E1_TYPE, (event, context) => emit({ scoped: eventLine(event, context) })));
            }
        })
        .withFilters(filters => {
            filters.createPrivateFilter(IDS.F1, f => f
                .unpartitioned()
                .handle((event, context) => {
                    const included = event instanceof E1Event;
                    emit({
                        filtered: {
                            sequenceNumber: context.sequenceNumber,
                            eventSourceId: context.eventSourceId.toString(),
                            included,
                            eventType: eventTypeName(event),
                        },
                    });
                    return included;
                }));
            if (PUBLIC_FILTER) {
                filters.createPublicFilter(IDS.PF, f => f
                    .handle((event, context) => {
                        emit({
                            publicFiltered: {
                                sequenceNumber: context.sequenceNumber,
                                eventSourceId: context.eventSourceId.toString(),
                                eventType: eventTypeName(event),
                            },
                        });
                        return new PartitionedFilterResult(true, context.eventSourceId.toString());
                    }));
            }
        })
        .withProjections(projections => {
            projections.createProjection(IDS.P1)
                .forReadModel(P1State)
                .on(E1_TYPE, key => key.keyFromEventSource(), (state, event, context) => {
                    state.count += 1;
                    state.last = event;
                    emit({
                        projected: {
                            key: context.key.toString(),
                            sequenceNumber: context.eventContext.sequenceNumber,
                            createdFromInitialState: context.wasCreatedFromInitialState,
                        },
                    });
                    return state;
                });
        });
    if (SUBSCRIBE) {
        builder = builder.withEventHorizons(eventHorizons => {
            eventHorizons.forTenant(TENANT, tenant => tenant
                .fromProducerMicroservice(SUBSCRIBE.microservice)
                .fromProducerTenant(SUBSCRIBE.tenant)
                .fromProducerStream(SUBSCRIBE.stream)
                .fromProducerPartition(SUBSCRIBE.partition)
                .toScope(SUBSCRIBE.scope)
                .onSuccess((_tenant, subscription, response) =>
                    logger.info(`subscribed to ${subscription.stream}/${subscription.partition} with consent ${response.consentId}`))
                .onFailure((_tenant, subscription, response) =>
                    logger.warn(`subscription to ${subscription.stream}/${subscription.partition} failed: ${response.failure && response.failure.reason}`)));
        });
    }
    client = builder.build();
} catch (error) {
    fatal(`building the client failed: ${error && error.stack || error}`);
}

emit({
    ready: true,
    ids: IDS,
    names: { E1: E1_NAME },
    microservice: MICROSERVICE_ID,
    tenant: TENANT,
});

// ---- commands -----------------------------------------------------------------------------

function describeFailure(failure) {
    return failure ? `${failure.reason} (failure ${failure.id})` : 'unknown failure';
}

function requireGuidString(value, what) {
    if (typeof value !== 'string' || value.length === 0) throw new Error(`${what} must be a GUID string`);
    return value;
}

async function commit(events) {
    if (!Array.isArray(events) || events.length === 0) throw new Error('commit needs a non-empty array');
    for (const event of events) {
        requireGuidString(event.eventSourceId, 'eventSourceId');
        if (typeof event.content !== 'object' || event.content === null) throw new Error('content must be an object');
    }
    const store = client.eventStore.forTenant(TENANT);
    let result;
    if (events.length === 1) {
        const [event] = events;
        result = event.public
            ? await store.commitPublic(event.content, event.eventSourceId, E1_TYPE)
            : await store.commit(event.content, event.eventSourceId, E1_TYPE);
    } else {
        result = await store.commit(events.map(event => ({
            content: event.content,
            eventSourceId: EventSourceId.from(event.eventSourceId),
            eventType: E1_TYPE,
            public: !!event.public,
        })));
    }
    if (result.failed) throw new Error(`commit failed: ${describeFailure(result.failure)}`);
    return {
        committed: result.events.toArray().map(event => ({
            sequenceNumber: event.eventLogSequenceNumber.value,
            eventSourceId: event.eventSourceId.toString(),
        })),
    };
}

// The tenant's event store for aggregates. When the runtime answers FetchForAggregate or
// CommitForAggregate with a failure, the SDK only logs it: the fetch then looks like an
// aggregate without events, and perform() ignores a failed commit. Its private converter of
// those answers is replaced on this store to throw instead, so the command fails.
function aggregateEventStore(builder) {
    const store = builder.forTenant(TENANT);
    const convert = store.toCommittedAggregateEvents;
    store.toCommittedAggregateEvents = function (aggregateRootId, eventSourceId, events, failure) {
        if (failure) {
            throw new Error(`the runtime failed the aggregate call: ${failure.getReason()} (failure ${guids.toSDK(failure.getId())})`);
        }
        return convert.call(this, aggregateRootId, eventSourceId, events, failure);
    };
    return store;
}

// A Score for the event source, with its committed events re-applied. aggregateOf() fetches
// them with the store's fetchForAggregateSync(), which the SDK implements by turning the event
// loop by hand (deasync) until its own fetchForAggregate() resolves. Called from a promise
// callback (as every command here is) that wait never ends, since nested promise callbacks do
// not run; called from a setImmediate callback it crashed Node 20 (FATAL ERROR in
// CheckImmediate). So the same fetchForAggregate() (same request, same conversion) is awaited
// first, and the store handed to aggregateOf() returns its result from fetchForAggregateSync().
async function fetchScore(eventSourceId) {
    const store = aggregateEventStore(client.eventStore);
    const events = await store.fetchForAggregate(AggregateRootId.from(IDS.Score), EventSourceId.from(eventSourceId));
    store.fetchForAggregateSync = () => events;
    return client.aggregateOf(Score, eventSourceId, () => store);
}

async function aggregate({ eventSourceId, add }) {
    requireGuidString(eventSourceId, 'eventSourceId');
    if (!Array.isArray(add) || !add.every(Number.isFinite)) throw new Error('add must be an array of numbers');
    let version;
    const operations = await fetchScore(eventSourceId);
    await operations.perform(score => {
        for (const amount of add) {
            score.apply({ amount }, SCORE_ADDED_TYPE);
        }
        version = score.version.value;
    });
    return { done: true, version };
}

async function reload({ eventSourceId }) {
    requireGuidString(eventSourceId, 'eventSourceId');
    let answer;
    const operations = await fetchScore(eventSourceId);
    await operations.perform(score => {
        answer = { total: score.total, count: score.count, version: score.version.value };
    });
    return answer;
}

async function projection({ key }) {
    requireGuidString(key, 'key');
    const current = await client.projections.forTenant(TENANT).get(P1State, key);
    return {
        state: current.state,
        createdFromInitialState: current.type === CurrentStateType.CreatedFromInitialState,
        key: current.key.toString(),
    };
}

let exiting = false;

// Cancels the client's streams, then exits once they had a moment to close.
function shutdown(code) {
    if (exiting) return;
    exiting = true;
    cancellationSource.cancel();
    setTimeout(() => process.exit(code), 300);
}

async function run(line) {
    if (line.trim() === '') return;
    let command;
    try {
        command = JSON.parse(line);
    } catch (error) {
        emit({ id: null, error: `not JSON: ${error.message}` });
        return;
    }
    if (typeof command !== 'object' || command === null || Array.isArray(command)) {
        emit({ id: null, error: `not a command object: ${line}` });
        return;
    }
    const id = command.id === undefined ? null : command.id;
    try {
        let answer;
        if (command.commit !== undefined) answer = await commit(command.commit);
        else if (command.aggregate !== undefined) answer = await aggregate(command.aggregate);
        else if (command.reload !== undefined) answer = await reload(command.reload);
        else if (command.projection !== undefined) answer = await projection(command.projection);
        else if (command.exit !== undefined) {
            emit({ id, bye: true });
            shutdown(0);
            return;
        } else throw new Error(`unknown command: ${line}`);
        emit({ id, ...answer });
    } catch (error) {
        emit({ id, error: `${error && error.message || error}` });
    }
}

// Commands run one at a time, in the order they came.
let pending = Promise.resolve();
const input = readline.createInterface({ input: process.stdin });
input.on('line', line => {
    pending = pending.then(() => (exiting ? undefined : run(line)));
});
input.on('close', () => {
    pending.then(() => shutdown(0));
});
process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
process.on('unhandledRejection', reason => logger.error(`unhandled rejection: ${reason && reason.stack || reason}`));
process.on('uncaughtException', error => fatal(`uncaught exception: ${error && error.stack || error}`));
