/*
 * The FMI 3.0 interface (model exchange and co-simulation) of a surrogate FMU, over fmu_core.
 * The types below are those of the standard's fmi3PlatformTypes.h and fmi3FunctionTypes.h,
 * declared here so the unit builds with nothing but a C99 compiler. Scheduled execution, clocks,
 * binaries and every integer type are not used by the unit: those functions report an error.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fmu_core.h"

typedef void *fmi3Instance;
typedef void *fmi3InstanceEnvironment;
typedef void *fmi3FMUState;
typedef uint32_t fmi3ValueReference;
typedef float fmi3Float32;
typedef double fmi3Float64;
typedef int8_t fmi3Int8;
typedef uint8_t fmi3UInt8;
typedef int16_t fmi3Int16;
typedef uint16_t fmi3UInt16;
typedef int32_t fmi3Int32;
typedef uint32_t fmi3UInt32;
typedef int64_t fmi3Int64;
typedef uint64_t fmi3UInt64;
typedef bool fmi3Boolean;
typedef char fmi3Char;
typedef const fmi3Char *fmi3String;
typedef uint8_t fmi3Byte;
typedef const fmi3Byte *fmi3Binary;
typedef bool fmi3Clock;

typedef enum { fmi3OK, fmi3Warning, fmi3Discard, fmi3Error, fmi3Fatal } fmi3Status;
typedef enum { fmi3Independent, fmi3Constant, fmi3Fixed, fmi3Tunable, fmi3Discrete,
               fmi3Dependent } fmi3DependencyKind;
typedef enum { fmi3IntervalNotYetKnown, fmi3IntervalUnchanged,
               fmi3IntervalChanged } fmi3IntervalQualifier;
typedef void (*fmi3LogMessageCallback)(fmi3InstanceEnvironment, fmi3Status, fmi3String,
                                       fmi3String);
typedef void (*fmi3ClockUpdateCallback)(fmi3InstanceEnvironment);
typedef void (*fmi3IntermediateUpdateCallback)(fmi3InstanceEnvironment, fmi3Float64, fmi3Boolean,
                                               fmi3Boolean, fmi3Boolean, fmi3Boolean,
                                               fmi3Boolean *, fmi3Float64 *);
typedef void (*fmi3LockPreemptionCallback)(void);
typedef void (*fmi3UnlockPreemptionCallback)(void);

typedef struct {
    SmCore core;
    fmi3LogMessageCallback log;
    fmi3InstanceEnvironment environment;
} Instance;

#define INSTANCE ((Instance *)instance)
#define NEED_INSTANCE()       \
    do {                      \
        if (!instance)        \
            return fmi3Error; \
    } while (0)

static fmi3Status fail(fmi3Instance instance, const char *message)
{
    if (instance && INSTANCE->log)
        INSTANCE->log(INSTANCE->environment, fmi3Error, "logStatusError", message);
    return fmi3Error;
}

SM_EXPORT const char *fmi3GetVersion(void) { return "3.0"; }

SM_EXPORT fmi3Status fmi3SetDebugLogging(fmi3Instance instance, fmi3Boolean loggingOn,
                                         size_t nCategories, const fmi3String categories[])
{
    NEED_INSTANCE();
    (void)loggingOn;
    (void)nCategories;
    (void)categories;
    return fmi3OK;
}

static fmi3Instance instantiate(fmi3String token, int model_exchange,
                                fmi3InstanceEnvironment environment, fmi3LogMessageCallback log)
{
    Instance *instance;
    if (!token || strcmp(token, SM_TOKEN) != 0)
        return NULL; /* not this unit's modelDescription.xml */
    instance = calloc(1, sizeof *instance);
    if (!instance)
        return NULL;
    sm_reset(&instance->core, model_exchange);
    instance->log = log;
    instance->environment = environment;
    return instance;
}

SM_EXPORT fmi3Instance fmi3InstantiateModelExchange(
    fmi3String instanceName, fmi3String instantiationToken, fmi3String resourcePath,
    fmi3Boolean visible, fmi3Boolean loggingOn, fmi3InstanceEnvironment instanceEnvironment,
    fmi3LogMessageCallback logMessage)
{
    (void)instanceName;
    (void)resourcePath;
    (void)visible;
    (void)loggingOn;
    return instantiate(instantiationToken, 1, instanceEnvironment, logMessage);
}

SM_EXPORT fmi3Instance fmi3InstantiateCoSimulation(
    fmi3String instanceName, fmi3String instantiationToken, fmi3String resourcePath,
    fmi3Boolean visible, fmi3Boolean loggingOn, fmi3Boolean eventModeUsed,
    fmi3Boolean earlyReturnAllowed, const fmi3ValueReference requiredIntermediateVariables[],
    size_t nRequiredIntermediateVariables, fmi3InstanceEnvironment instanceEnvironment,
    fmi3LogMessageCallback logMessage, fmi3IntermediateUpdateCallback intermediateUpdate)
{
    (void)instanceName;
    (void)resourcePath;
    (void)visible;
    (void)loggingOn;
    (void)eventModeUsed;
    (void)earlyReturnAllowed;
    (void)requiredIntermediateVariables;
    (void)nRequiredIntermediateVariables;
    (void)intermediateUpdate;
    return instantiate(instantiationToken, 0, instanceEnvironment, logMessage);
}

SM_EXPORT fmi3Instance fmi3InstantiateScheduledExecution(
    fmi3String instanceName, fmi3String instantiationToken, fmi3String resourcePath,
    fmi3Boolean visible, fmi3Boolean loggingOn, fmi3InstanceEnvironment instanceEnvironment,
    fmi3LogMessageCallback logMessage, fmi3ClockUpdateCallback clockUpdate,
    fmi3LockPreemptionCallback lockPreemption, fmi3UnlockPreemptionCallback unlockPreemption)
{
    (void)instanceName;
    (void)instantiationToken;
    (void)resourcePath;
    (void)visible;
    (void)loggingOn;
    (void)instanceEnvironment;
    (void)logMessage;
    (void)clockUpdate;
    (void)lockPreemption;
    (void)unlockPreemption;
    return NULL; /* the unit does not provide scheduled execution */
}

SM_EXPORT void fmi3FreeInstance(fmi3Instance instance) { free(instance); }

SM_EXPORT fmi3Status fmi3EnterInitializationMode(fmi3Instance instance,
                                                 fmi3Boolean toleranceDefined,
                                                 fmi3Float64 tolerance, fmi3Float64 startTime,
                                                 fmi3Boolean stopTimeDefined,
                                                 fmi3Float64 stopTime)
{
    NEED_INSTANCE();
    (void)toleranceDefined;
    (void)tolerance;
    (void)stopTimeDefined;
    (void)stopTime;
    INSTANCE->core.time = startTime;
    INSTANCE->core.mode = SM_INITIALIZATION;
    return fmi3OK;
}

SM_EXPORT fmi3Status fmi3ExitInitializationMode(fmi3Instance instance)
{
    NEED_INSTANCE();
    sm_update_discrete(&INSTANCE->core);
    INSTANCE->core.mode = INSTANCE->core.model_exchange ? SM_EVENT : SM_STEP;
    return fmi3OK;
}

SM_EXPORT fmi3Status fmi3EnterEventMode(fmi3Instance instance)
{
    NEED_INSTANCE();
    INSTANCE->core.mode = SM_EVENT;
    return fmi3OK;
}

SM_EXPORT fmi3Status fmi3Terminate(fmi3Instance instance)
{
    NEED_INSTANCE();
    INSTANCE->core.mode = SM_TERMINATED;
    return fmi3OK;
}

SM_EXPORT fmi3Status fmi3Reset(fmi3Instance instance)
{
    NEED_INSTANCE();
    sm_reset(&INSTANCE->core, INSTANCE->core.model_exchange);
    return fmi3OK;
}

SM_EXPORT fmi3Status fmi3GetFloat64(fmi3Instance instance, const fmi3ValueReference vr[],
                                    size_t nvr, fmi3Float64 values[], size_t nValues)
{
    NEED_INSTANCE();
    if (nValues != nvr)
        return fail(instance, "fmi3GetFloat64: every variable is a scalar (nValues != nvr)");
    for (size_t i = 0; i < nvr; ++i)
        if (sm_get_real(&INSTANCE->core, vr[i], &values[i]))
            return fail(instance, "fmi3GetFloat64: a value reference is not a Float64");
    return fmi3OK;
}

SM_EXPORT fmi3Status fmi3SetFloat64(fmi3Instance instance, const fmi3ValueReference vr[],
                                    size_t nvr, const fmi3Float64 values[], size_t nValues)
{
    NEED_INSTANCE();
    if (nValues != nvr)
        return fail(instance, "fmi3SetFloat64: every variable is a scalar (nValues != nvr)");
    for (size_t i = 0; i < nvr; ++i)
        if (sm_set_real(&INSTANCE->core, vr[i], values[i]))
            return fail(instance, "fmi3SetFloat64: only the inputs can be set");
    return fmi3OK;
}

SM_EXPORT fmi3Status fmi3GetBoolean(fmi3Instance instance, const fmi3ValueReference vr[],
                                    size_t nvr, fmi3Boolean values[], size_t nValues)
{
    NEED_INSTANCE();
    if (nValues != nvr)
        return fail(instance, "fmi3GetBoolean: every variable is a scalar (nValues != nvr)");
    for (size_t i = 0; i < nvr; ++i) {
        int value;
        if (sm_get_boolean(&INSTANCE->core, vr[i], &value))
            return fail(instance, "fmi3GetBoolean: a value reference is not a Boolean");
        values[i] = value != 0;
    }
    return fmi3OK;
}

/* Getters and setters of the types the unit has no variable of. */
#define NO_VARIABLES(function, type, message)                                              \
    SM_EXPORT fmi3Status function(fmi3Instance instance, const fmi3ValueReference vr[],      \
                                  size_t nvr, type values[], size_t nValues)                 \
    {                                                                                        \
        (void)vr;                                                                            \
        (void)values;                                                                        \
        (void)nValues;                                                                       \
        NEED_INSTANCE();                                                                     \
        return nvr ? fail(instance, #function ": " message) : fmi3OK;                        \
    }
#define NO_TYPE(type)                                                                        \
    NO_VARIABLES(fmi3Get##type, fmi3##type, "the unit has no " #type " variable")            \
    NO_VARIABLES(fmi3Set##type, const fmi3##type, "the unit has no " #type " variable")

NO_TYPE(Float32)
NO_TYPE(Int8)
NO_TYPE(UInt8)
NO_TYPE(Int16)
NO_TYPE(UInt16)
NO_TYPE(Int32)
NO_TYPE(UInt32)
NO_TYPE(Int64)
NO_TYPE(UInt64)
NO_TYPE(String)
NO_VARIABLES(fmi3SetBoolean, const fmi3Boolean, "in_domain is an output")

SM_EXPORT fmi3Status fmi3GetBinary(fmi3Instance instance, const fmi3ValueReference vr[],
                                   size_t nvr, size_t valueSizes[], fmi3Binary values[],
                                   size_t nValues)
{
    (void)vr;
    (void)valueSizes;
    (void)values;
    (void)nValues;
    NEED_INSTANCE();
    return nvr ? fail(instance, "fmi3GetBinary: the unit has no Binary variable") : fmi3OK;
}

SM_EXPORT fmi3Status fmi3SetBinary(fmi3Instance instance, const fmi3ValueReference vr[],
                                   size_t nvr, const size_t valueSizes[],
                                   const fmi3Binary values[], size_t nValues)
{
    (void)vr;
    (void)valueSizes;
    (void)values;
    (void)nValues;
    NEED_INSTANCE();
    return nvr ? fail(instance, "fmi3SetBinary: the unit has no Binary variable") : fmi3OK;
}

SM_EXPORT fmi3Status fmi3GetClock(fmi3Instance instance, const fmi3ValueReference vr[],
                                  size_t nvr, fmi3Clock values[])
{
    (void)vr;
    (void)values;
    NEED_INSTANCE();
    return nvr ? fail(instance, "fmi3GetClock: the unit has no clock") : fmi3OK;
}

SM_EXPORT fmi3Status fmi3SetClock(fmi3Instance instance, const fmi3ValueReference vr[],
                                  size_t nvr, const fmi3Clock values[])
{
    (void)vr;
    (void)values;
    NEED_INSTANCE();
    return nvr ? fail(instance, "fmi3SetClock: the unit has no clock") : fmi3OK;
}

/* Outputs, std and in_domain depend on every input, margin 2 i and 2 i + 1 on input i only
 * (ModelStructure says the same). */
static size_t dependencies(fmi3ValueReference vr)
{
    if (vr >= SM_VR_VALUE && vr <= SM_VR_IN_DOMAIN)
        return SM_N_INPUTS;
    return vr >= SM_VR_MARGIN && vr < SM_VR_END ? 1 : 0;
}

SM_EXPORT fmi3Status fmi3GetNumberOfVariableDependencies(fmi3Instance instance,
                                                         fmi3ValueReference valueReference,
                                                         size_t *nDependencies)
{
    NEED_INSTANCE();
    if (valueReference >= SM_VR_END)
        return fail(instance, "fmi3GetNumberOfVariableDependencies: unknown value reference");
    *nDependencies = dependencies(valueReference);
    return fmi3OK;
}

SM_EXPORT fmi3Status fmi3GetVariableDependencies(fmi3Instance instance,
                                                 fmi3ValueReference dependent,
                                                 size_t elementIndicesOfDependent[],
                                                 fmi3ValueReference independents[],
                                                 size_t elementIndicesOfIndependents[],
                                                 fmi3DependencyKind dependencyKinds[],
                                                 size_t nDependencies)
{
    size_t n = dependencies(dependent);
    NEED_INSTANCE();
    if (n == 0 || nDependencies != n)
        return fail(instance, "fmi3GetVariableDependencies: not a dependent variable, or "
                              "nDependencies is not its number of dependencies");
    for (size_t i = 0; i < n; ++i) {
        elementIndicesOfDependent[i] = 0;
        independents[i] = SM_VR_INPUT + (fmi3ValueReference)(
            dependent >= SM_VR_MARGIN ? (dependent - SM_VR_MARGIN) / 2 : i);
        elementIndicesOfIndependents[i] = 0;
        dependencyKinds[i] = fmi3Dependent;
    }
    return fmi3OK;
}

SM_EXPORT fmi3Status fmi3GetFMUState(fmi3Instance instance, fmi3FMUState *state)
{
    NEED_INSTANCE();
    return sm_state_save(&INSTANCE->core, state) ? fail(instance, "fmi3GetFMUState: out of memory")
                                                  : fmi3OK;
}

SM_EXPORT fmi3Status fmi3SetFMUState(fmi3Instance instance, fmi3FMUState state)
{
    NEED_INSTANCE();
    return sm_state_restore(&INSTANCE->core, state) ? fail(instance, "fmi3SetFMUState: no state")
                                                    : fmi3OK;
}

SM_EXPORT fmi3Status fmi3FreeFMUState(fmi3Instance instance, fmi3FMUState *state)
{
    NEED_INSTANCE();
    sm_state_free(state);
    return fmi3OK;
}

SM_EXPORT fmi3Status fmi3SerializedFMUStateSize(fmi3Instance instance, fmi3FMUState state,
                                                size_t *size)
{
    NEED_INSTANCE();
    (void)state;
    *size = sm_serialized_size();
    return fmi3OK;
}

SM_EXPORT fmi3Status fmi3SerializeFMUState(fmi3Instance instance, fmi3FMUState state,
                                           fmi3Byte bytes[], size_t size)
{
    NEED_INSTANCE();
    if (!state || size < sm_serialized_size())
        return fail(instance, "fmi3SerializeFMUState: buffer too small");
    sm_serialize(state, (unsigned char *)bytes);
    return fmi3OK;
}

SM_EXPORT fmi3Status fmi3DeserializeFMUState(fmi3Instance instance, const fmi3Byte bytes[],
                                             size_t size, fmi3FMUState *state)
{
    NEED_INSTANCE();
    return sm_state_from_bytes((const unsigned char *)bytes, size, state)
               ? fail(instance, "fmi3DeserializeFMUState: the bytes are not a state of this unit")
               : fmi3OK;
}

SM_EXPORT fmi3Status fmi3GetDirectionalDerivative(fmi3Instance instance,
                                                  const fmi3ValueReference unknowns[],
                                                  size_t nUnknowns,
                                                  const fmi3ValueReference knowns[],
                                                  size_t nKnowns, const fmi3Float64 seed[],
                                                  size_t nSeed, fmi3Float64 sensitivity[],
                                                  size_t nSensitivity)
{
    NEED_INSTANCE();
    if (nSeed != nKnowns || nSensitivity != nUnknowns ||
        sm_directional(&INSTANCE->core, unknowns, nUnknowns, knowns, nKnowns, seed, sensitivity))
        return fail(instance, "fmi3GetDirectionalDerivative: the knowns must be inputs and the "
                              "unknowns Float64 outputs or margins, one value each");
    return fmi3OK;
}

SM_EXPORT fmi3Status fmi3GetAdjointDerivative(fmi3Instance instance,
                                              const fmi3ValueReference unknowns[],
                                              size_t nUnknowns, const fmi3ValueReference knowns[],
                                              size_t nKnowns, const fmi3Float64 seed[],
                                              size_t nSeed, fmi3Float64 sensitivity[],
                                              size_t nSensitivity)
{
    NEED_INSTANCE();
    if (nSeed != nUnknowns || nSensitivity != nKnowns ||
        sm_adjoint(&INSTANCE->core, unknowns, nUnknowns, knowns, nKnowns, seed, sensitivity))
        return fail(instance, "fmi3GetAdjointDerivative: the knowns must be inputs and the "
                              "unknowns Float64 outputs or margins, one value each");
    return fmi3OK;
}

SM_EXPORT fmi3Status fmi3EnterConfigurationMode(fmi3Instance instance)
{
    NEED_INSTANCE();
    return fail(instance, "fmi3EnterConfigurationMode: the unit has no structural parameter");
}

SM_EXPORT fmi3Status fmi3ExitConfigurationMode(fmi3Instance instance)
{
    NEED_INSTANCE();
    return fail(instance, "fmi3ExitConfigurationMode: the unit has no structural parameter");
}

#define PARAMETERS(...) __VA_ARGS__
/* A clock function: ``parameters`` after the value references (in parentheses), ``unused`` the
 * statements that mark them used. */
#define NO_CLOCK(function, parameters, unused)                                             \
    SM_EXPORT fmi3Status function(fmi3Instance instance, const fmi3ValueReference vr[],      \
                                  size_t nvr, PARAMETERS parameters)                         \
    {                                                                                        \
        (void)vr;                                                                            \
        unused;                                                                              \
        NEED_INSTANCE();                                                                     \
        return nvr ? fail(instance, #function ": the unit has no clock") : fmi3OK;           \
    }

NO_CLOCK(fmi3GetIntervalDecimal, (fmi3Float64 intervals[], fmi3IntervalQualifier qualifiers[]),
         (void)intervals; (void)qualifiers)
NO_CLOCK(fmi3GetIntervalFraction,
         (fmi3UInt64 counters[], fmi3UInt64 resolutions[], fmi3IntervalQualifier qualifiers[]),
         (void)counters; (void)resolutions; (void)qualifiers)
NO_CLOCK(fmi3GetShiftDecimal, (fmi3Float64 shifts[]), (void)shifts)
NO_CLOCK(fmi3GetShiftFraction, (fmi3UInt64 counters[], fmi3UInt64 resolutions[]),
         (void)counters; (void)resolutions)
NO_CLOCK(fmi3SetIntervalDecimal, (const fmi3Float64 intervals[]), (void)intervals)
NO_CLOCK(fmi3SetIntervalFraction, (const fmi3UInt64 counters[], const fmi3UInt64 resolutions[]),
         (void)counters; (void)resolutions)
NO_CLOCK(fmi3SetShiftDecimal, (const fmi3Float64 shifts[]), (void)shifts)
NO_CLOCK(fmi3SetShiftFraction, (const fmi3UInt64 counters[], const fmi3UInt64 resolutions[]),
         (void)counters; (void)resolutions)

SM_EXPORT fmi3Status fmi3EvaluateDiscreteStates(fmi3Instance instance)
{
    NEED_INSTANCE();
    sm_event_update(&INSTANCE->core);
    return fmi3OK;
}

SM_EXPORT fmi3Status fmi3UpdateDiscreteStates(fmi3Instance instance,
                                              fmi3Boolean *discreteStatesNeedUpdate,
                                              fmi3Boolean *terminateSimulation,
                                              fmi3Boolean *nominalsOfContinuousStatesChanged,
                                              fmi3Boolean *valuesOfContinuousStatesChanged,
                                              fmi3Boolean *nextEventTimeDefined,
                                              fmi3Float64 *nextEventTime)
{
    NEED_INSTANCE();
    sm_event_update(&INSTANCE->core);
    *discreteStatesNeedUpdate = false;
    *terminateSimulation = false;
    *nominalsOfContinuousStatesChanged = false;
    *valuesOfContinuousStatesChanged = false;
    *nextEventTimeDefined = false;
    *nextEventTime = 0.0;
    return fmi3OK;
}

/* Model exchange: no continuous states; the event indicators are the margins, so in_domain
 * changes at an event. */

SM_EXPORT fmi3Status fmi3EnterContinuousTimeMode(fmi3Instance instance)
{
    NEED_INSTANCE();
    INSTANCE->core.mode = SM_CONTINUOUS;
    return fmi3OK;
}

SM_EXPORT fmi3Status fmi3CompletedIntegratorStep(fmi3Instance instance,
                                                 fmi3Boolean noSetFMUStatePriorToCurrentPoint,
                                                 fmi3Boolean *enterEventMode,
                                                 fmi3Boolean *terminateSimulation)
{
    NEED_INSTANCE();
    (void)noSetFMUStatePriorToCurrentPoint;
    *enterEventMode = false;
    *terminateSimulation = false;
    return fmi3OK;
}

SM_EXPORT fmi3Status fmi3SetTime(fmi3Instance instance, fmi3Float64 time)
{
    NEED_INSTANCE();
    INSTANCE->core.time = time;
    return fmi3OK;
}

#define NO_STATES(function, type)                                                          \
    SM_EXPORT fmi3Status function(fmi3Instance instance, type values[], size_t n)            \
    {                                                                                        \
        (void)values;                                                                        \
        NEED_INSTANCE();                                                                     \
        return n ? fail(instance, #function ": the unit has no continuous state") : fmi3OK;  \
    }

NO_STATES(fmi3SetContinuousStates, const fmi3Float64)
NO_STATES(fmi3GetContinuousStateDerivatives, fmi3Float64)
NO_STATES(fmi3GetContinuousStates, fmi3Float64)
NO_STATES(fmi3GetNominalsOfContinuousStates, fmi3Float64)

SM_EXPORT fmi3Status fmi3GetEventIndicators(fmi3Instance instance, fmi3Float64 eventIndicators[],
                                            size_t nEventIndicators)
{
    NEED_INSTANCE();
    if (nEventIndicators != SM_N_INDICATORS)
        return fail(instance, "fmi3GetEventIndicators: not the number of event indicators");
    sm_event_indicators(&INSTANCE->core, eventIndicators);
    return fmi3OK;
}

SM_EXPORT fmi3Status fmi3GetNumberOfEventIndicators(fmi3Instance instance,
                                                    size_t *nEventIndicators)
{
    NEED_INSTANCE();
    *nEventIndicators = SM_N_INDICATORS;
    return fmi3OK;
}

SM_EXPORT fmi3Status fmi3GetNumberOfContinuousStates(fmi3Instance instance,
                                                     size_t *nContinuousStates)
{
    NEED_INSTANCE();
    *nContinuousStates = 0;
    return fmi3OK;
}

/* Co-simulation: a step evaluates the network at the inputs set for it; nothing is allocated. */

SM_EXPORT fmi3Status fmi3EnterStepMode(fmi3Instance instance)
{
    NEED_INSTANCE();
    INSTANCE->core.mode = SM_STEP;
    return fmi3OK;
}

SM_EXPORT fmi3Status fmi3GetOutputDerivatives(fmi3Instance instance,
                                              const fmi3ValueReference vr[], size_t nvr,
                                              const fmi3Int32 orders[], fmi3Float64 values[],
                                              size_t nValues)
{
    (void)vr;
    (void)orders;
    (void)values;
    (void)nValues;
    NEED_INSTANCE();
    return nvr ? fail(instance, "fmi3GetOutputDerivatives: maxOutputDerivativeOrder is 0")
               : fmi3OK;
}

SM_EXPORT fmi3Status fmi3DoStep(fmi3Instance instance, fmi3Float64 currentCommunicationPoint,
                                fmi3Float64 communicationStepSize,
                                fmi3Boolean noSetFMUStatePriorToCurrentPoint,
                                fmi3Boolean *eventHandlingNeeded,
                                fmi3Boolean *terminateSimulation, fmi3Boolean *earlyReturn,
                                fmi3Float64 *lastSuccessfulTime)
{
    double ignored;
    NEED_INSTANCE();
    (void)noSetFMUStatePriorToCurrentPoint;
    INSTANCE->core.time = currentCommunicationPoint + communicationStepSize;
    sm_get_real(&INSTANCE->core, SM_VR_VALUE, &ignored); /* evaluate at the step's inputs */
    sm_update_discrete(&INSTANCE->core);
    *eventHandlingNeeded = false;
    *terminateSimulation = false;
    *earlyReturn = false;
    *lastSuccessfulTime = INSTANCE->core.time;
    return fmi3OK;
}

SM_EXPORT fmi3Status fmi3ActivateModelPartition(fmi3Instance instance,
                                                fmi3ValueReference clockReference,
                                                fmi3Float64 activationTime)
{
    (void)clockReference;
    (void)activationTime;
    NEED_INSTANCE();
    return fail(instance, "fmi3ActivateModelPartition: the unit has no scheduled execution");
}
