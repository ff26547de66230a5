// An independent OCPP client (ocpp-rpc, strict mode: every call and answer is checked against the
// official OCPP JSON schemas) that plays a 1.6 charger and a 2.0.1 station against PowerBank.
//
// Usage: node interop.js WS_URL IDENTITY_16 IDENTITY_201 PASSWORD
// Prints one line per step; exits 0 when every step passed.
'use strict';

const { RPCClient } = require('ocpp-rpc');

const [url, identity16, identity201, password] = process.argv.slice(2);
const failures = [];
const now = () => new Date().toISOString();

function check(step, condition, detail) {
    console.log(`${condition ? 'ok  ' : 'FAIL'} ${step}${condition ? '' : `: ${JSON.stringify(detail)}`}`);
    if (!condition) failures.push(step);
}

function strictClient(identity, protocol, secret) {
    const client = new RPCClient({
        endpoint: url, identity, password: secret, protocols: [protocol],
        strictMode: true, reconnect: false, callTimeoutMs: 5000,
    });
    client.on('strictValidationFailure', (event) => {
        check(`${protocol} strict validation of ${event.messageId || ''} ${event.method || ''}`, false,
              String(event.error && event.error.message));
    });
    return client;
}

function waitFor(promise, ms, what) {
    return Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(`no ${what}`)), ms))]);
}

async function refusedWithWrongPassword() {
    const client = strictClient(identity16, 'ocpp1.6', 'not the password');
    try {
        await client.connect();
        check('wrong password is refused', false, 'connected');
        await client.close();
    } catch (error) {
        check('wrong password is refused', error.code === 401, error.code);
    }
}

async function ocpp16() {
    const client = strictClient(identity16, 'ocpp1.6', password);
    let probed;
    const probe = new Promise((resolve) => { probed = resolve; });
    client.handle('GetConfiguration', ({ params }) => {
        probed(params);
        return {
            configurationKey: [
                { key: 'SupportedFeatureProfiles', readonly: true, value: 'Core,SmartCharging' },
                { key: 'ChargeProfileMaxStackLevel', readonly: true, value: '10' },
                { key: 'ChargingScheduleAllowedChargingRateUnit', readonly: true, value: 'Current,Power' },
                { key: 'MeterValueSampleInterval', readonly: false, value: '10' },
            ],
        };
    });
    await client.connect();
    check('1.6 subprotocol', client.protocol === 'ocpp1.6', client.protocol);

    const boot = await client.call('BootNotification', {
        chargePointVendor: 'ocpp-rpc', chargePointModel: 'Strict 16', firmwareVersion: '1.6.0',
    });
    check('1.6 BootNotification accepted', boot.status === 'Accepted' && boot.interval > 0, boot);
    const asked = await waitFor(probe, 5000, 'GetConfiguration');
    check('1.6 capability probe asks for SupportedFeatureProfiles',
          (asked.key || []).includes('SupportedFeatureProfiles'), asked);
    const heartbeat = await client.call('Heartbeat', {});
    check('1.6 Heartbeat', !Number.isNaN(Date.parse(heartbeat.currentTime)), heartbeat);
    await client.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Charging', timestamp: now() });
    const authorized = await client.call('Authorize', { idTag: 'RPC-TAG' });
    check('1.6 Authorize', authorized.idTagInfo.status === 'Accepted', authorized);
    const started = await client.call('StartTransaction', { connectorId: 1, idTag: 'RPC-TAG', meterStart: 100, timestamp: now() });
    check('1.6 StartTransaction', Number.isInteger(started.transactionId), started);
    await client.call('MeterValues', {
        connectorId: 1, transactionId: started.transactionId,
        meterValue: [{ timestamp: now(), sampledValue: [
            { value: '3680', measurand: 'Power.Active.Import', unit: 'W' },
            { value: '600', measurand: 'Energy.Active.Import.Register', unit: 'Wh' },
            { value: '16', measurand: 'Current.Import', phase: 'L1', unit: 'A' },
        ] }],
    });
    check('1.6 MeterValues', true);
    const data = await client.call('DataTransfer', { vendorId: 'org.example', messageId: 'hello', data: 'x' });
    check('1.6 DataTransfer', typeof data.status === 'string', data);
    await client.call('FirmwareStatusNotification', { status: 'Idle' });
    await client.call('DiagnosticsStatusNotification', { status: 'Idle' });
    check('1.6 firmware and diagnostics status', true);
    const stopped = await client.call('StopTransaction', {
        transactionId: started.transactionId, meterStop: 700, timestamp: now(), idTag: 'RPC-TAG', reason: 'Local',
    });
    check('1.6 StopTransaction', stopped.idTagInfo.status === 'Accepted', stopped);
    try {
        await client.call('CancelReservation', { reservationId: 1 });
        check('1.6 unhandled action is refused', false, 'answered');
    } catch (error) {
        check('1.6 unhandled action is refused', ['NotImplemented', 'NotSupported'].includes(error.rpcErrorCode), error.rpcErrorCode);
    }
    await client.close();
}

async function ocpp201() {
    const client = strictClient(identity201, 'ocpp2.0.1', password);
    let probed;
    const probe = new Promise((resolve) => { probed = resolve; });
    client.handle('GetVariables', ({ params }) => {
        probed(params);
        const values = { Available: 'true', Enabled: 'true', ProfileStackLevel: '5', RateUnit: 'A,W' };
        return {
            getVariableResult: params.getVariableData.map(({ component, variable }) => (
                component.name === 'SmartChargingCtrlr' && values[variable.name] !== undefined
                    ? { attributeStatus: 'Accepted', attributeType: 'Actual', attributeValue: values[variable.name], component, variable }
                    : { attributeStatus: 'UnknownVariable', component, variable })),
        };
    });
    await client.connect();
    check('2.0.1 subprotocol', client.protocol === 'ocpp2.0.1', client.protocol);

    const boot = await client.call('BootNotification', {
        reason: 'PowerUp', chargingStation: { vendorName: 'ocpp-rpc', model: 'Strict 201', firmwareVersion: '2.0.1' },
    });
    check('2.0.1 BootNotification accepted', boot.status === 'Accepted' && boot.interval > 0, boot);
    const asked = await waitFor(probe, 5000, 'GetVariables');
    check('2.0.1 capability probe asks the SmartChargingCtrlr',
          asked.getVariableData.some((item) => item.component.name === 'SmartChargingCtrlr'), asked);
    await client.call('Heartbeat', {});
    await client.call('StatusNotification', { timestamp: now(), connectorStatus: 'Occupied', evseId: 1, connectorId: 1 });
    const authorized = await client.call('Authorize', { idToken: { idToken: 'RPC-TOKEN', type: 'ISO14443' } });
    check('2.0.1 Authorize', authorized.idTokenInfo.status === 'Accepted', authorized);
    const meterValue = [{ timestamp: now(), sampledValue: [
        { value: 7400, measurand: 'Power.Active.Import', unitOfMeasure: { unit: 'W' } },
        { value: 2.5, measurand: 'Energy.Active.Import.Register', unitOfMeasure: { unit: 'kWh' } },
    ] }];
    const started = await client.call('TransactionEvent', {
        eventType: 'Started', timestamp: now(), triggerReason: 'Authorized', seqNo: 0,
        transactionInfo: { transactionId: 'RPC-TX-1' }, evse: { id: 1, connectorId: 1 },
        idToken: { idToken: 'RPC-TOKEN', type: 'ISO14443' }, meterValue,
    });
    check('2.0.1 TransactionEvent Started', started.idTokenInfo.status === 'Accepted', started);
    await client.call('MeterValues', { evseId: 1, meterValue });
    await client.call('TransactionEvent', {
        eventType: 'Ended', timestamp: now(), triggerReason: 'EVDeparted', seqNo: 1,
        transactionInfo: { transactionId: 'RPC-TX-1', stoppedReason: 'EVDisconnected' },
    });
    await client.call('NotifyReport', { requestId: 1, generatedAt: now(), seqNo: 0, tbc: false });
    check('2.0.1 MeterValues, TransactionEvent Ended, NotifyReport', true);
    await client.close();
}

(async () => {
    try {
        await refusedWithWrongPassword();
        await ocpp16();
        await ocpp201();
    } catch (error) {
        check('interop run', false, `${error.rpcErrorCode || ''} ${error.message}`);
    }
    console.log(failures.length ? `${failures.length} step(s) failed` : 'all steps passed');
    process.exit(failures.length ? 1 : 0);
})();
