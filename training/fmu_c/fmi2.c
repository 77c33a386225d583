/*
 * The FMI 2.0 interface (model exchange and co-simulation) of a surrogate FMU, over fmu_core.
 * The types below are those of the standard's fmi2TypesPlatform.h ("default" platform) and
 * fmi2FunctionTypes.h, declared here so the unit builds with nothing but a C99 compiler.
 */
#include <stdlib.h>
#include <string.h>

#include "fmu_core.h"

typedef void *fmi2Component;
typedef void *fmi2ComponentEnvironment;
typedef void *fmi2FMUstate;
typedef unsigned int fmi2ValueReference;
typedef double fmi2Real;
typedef int fmi2Integer;
typedef int fmi2Boolean;
typedef char fmi2Char;
typedef const fmi2Char *fmi2String;
typedef char fmi2Byte;
#define fmi2True 1
#define fmi2False 0

typedef enum { fmi2OK, fmi2Warning, fmi2Discard, fmi2Error, fmi2Fatal, fmi2Pending } fmi2Status;
typedef enum { fmi2ModelExchange, fmi2CoSimulation } fmi2Type;
typedef enum { fmi2DoStepStatus, fmi2PendingStatus, fmi2LastSuccessfulTime,
               fmi2Terminated } fmi2StatusKind;
typedef void (*fmi2CallbackLogger)(fmi2ComponentEnvironment, fmi2String, fmi2Status, fmi2String,
                                   fmi2String, ...);
typedef void *(*fmi2CallbackAllocateMemory)(size_t, size_t);
typedef void (*fmi2CallbackFreeMemory)(void *);
typedef void (*fmi2StepFinished)(fmi2ComponentEnvironment, fmi2Status);
typedef struct {
    const fmi2CallbackLogger logger;
    const fmi2CallbackAllocateMemory allocateMemory;
    const fmi2CallbackFreeMemory freeMemory;
    const fmi2StepFinished stepFinished;
    const fmi2ComponentEnvironment componentEnvironment;
} fmi2CallbackFunctions;
typedef struct {
    fmi2Boolean newDiscreteStatesNeeded;
    fmi2Boolean terminateSimulation;
    fmi2Boolean nominalsOfContinuousStatesChanged;
    fmi2Boolean valuesOfContinuousStatesChanged;
    fmi2Boolean nextEventTimeDefined;
    fmi2Real nextEventTime;
} fmi2EventInfo;

typedef struct {
    SmCore core;
    fmi2CallbackLogger logger;
    fmi2CallbackFreeMemory free_memory;
    fmi2ComponentEnvironment environment;
    int logging;
    char name[128];
} Instance;

#define INSTANCE ((Instance *)c)

static fmi2Status fail(fmi2Component c, const char *message)
{
    /* The message is passed as the format: it holds no '%'. */
    if (c && INSTANCE->logger)
        INSTANCE->logger(INSTANCE->environment, INSTANCE->name, fmi2Error, "logStatusError",
                         message);
    return fmi2Error;
}

#define NEED_INSTANCE()      \
    do {                     \
        if (!c)              \
            return fmi2Error; \
    } while (0)

SM_EXPORT const char *fmi2GetTypesPlatform(void) { return "default"; }
SM_EXPORT const char *fmi2GetVersion(void) { return "2.0"; }

SM_EXPORT fmi2Status fmi2SetDebugLogging(fmi2Component c, fmi2Boolean loggingOn, size_t n,
                                         const fmi2String categories[])
{
    NEED_INSTANCE();
    (void)n;
    (void)categories;
    INSTANCE->logging = loggingOn;
    return fmi2OK;
}

SM_EXPORT fmi2Component fmi2Instantiate(fmi2String instanceName, fmi2Type fmuType,
                                        fmi2String fmuGUID, fmi2String fmuResourceLocation,
                                        const fmi2CallbackFunctions *functions,
                                        fmi2Boolean visible, fmi2Boolean loggingOn)
{
    Instance *instance;
    (void)fmuResourceLocation;
    (void)visible;
    if (!functions || !fmuGUID || strcmp(fmuGUID, SM_TOKEN) != 0)
        return NULL; /* not this unit's modelDescription.xml */
    instance = functions->allocateMemory ? functions->allocateMemory(1, sizeof *instance)
                                         : calloc(1, sizeof *instance);
    if (!instance)
        return NULL;
    sm_reset(&instance->core, fmuType == fmi2ModelExchange);
    instance->logger = functions->logger;
    instance->free_memory = functions->allocateMemory ? functions->freeMemory : free;
    instance->environment = functions->componentEnvironment;
    instance->logging = loggingOn;
    strncpy(instance->name, instanceName ? instanceName : "", sizeof instance->name - 1);
    return instance;
}

SM_EXPORT void fmi2FreeInstance(fmi2Component c)
{
    if (c && INSTANCE->free_memory)
        INSTANCE->free_memory(c);
}

SM_EXPORT fmi2Status fmi2SetupExperiment(fmi2Component c, fmi2Boolean toleranceDefined,
                                         fmi2Real tolerance, fmi2Real startTime,
                                         fmi2Boolean stopTimeDefined, fmi2Real stopTime)
{
    NEED_INSTANCE();
    (void)toleranceDefined;
    (void)tolerance;
    (void)stopTimeDefined;
    (void)stopTime;
    INSTANCE->core.time = startTime;
    return fmi2OK;
}

SM_EXPORT fmi2Status fmi2EnterInitializationMode(fmi2Component c)
{
    NEED_INSTANCE();
    INSTANCE->core.mode = SM_INITIALIZATION;
    return fmi2OK;
}

SM_EXPORT fmi2Status fmi2ExitInitializationMode(fmi2Component c)
{
    NEED_INSTANCE();
    sm_update_discrete(&INSTANCE->core);
    INSTANCE->core.mode = INSTANCE->core.model_exchange ? SM_EVENT : SM_STEP;
    return fmi2OK;
}

SM_EXPORT fmi2Status fmi2Terminate(fmi2Component c)
{
    NEED_INSTANCE();
    INSTANCE->core.mode = SM_TERMINATED;
    return fmi2OK;
}

SM_EXPORT fmi2Status fmi2Reset(fmi2Component c)
{
    NEED_INSTANCE();
    sm_reset(&INSTANCE->core, INSTANCE->core.model_exchange);
    return fmi2OK;
}

SM_EXPORT fmi2Status fmi2GetReal(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                                 fmi2Real value[])
{
    NEED_INSTANCE();
    for (size_t i = 0; i < nvr; ++i)
        if (sm_get_real(&INSTANCE->core, vr[i], &value[i]))
            return fail(c, "fmi2GetReal: a value reference is not a Real");
    return fmi2OK;
}

SM_EXPORT fmi2Status fmi2GetBoolean(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                                    fmi2Boolean value[])
{
    NEED_INSTANCE();
    for (size_t i = 0; i < nvr; ++i)
        if (sm_get_boolean(&INSTANCE->core, vr[i], &value[i]))
            return fail(c, "fmi2GetBoolean: a value reference is not a Boolean");
    return fmi2OK;
}

SM_EXPORT fmi2Status fmi2SetReal(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                                 const fmi2Real value[])
{
    NEED_INSTANCE();
    for (size_t i = 0; i < nvr; ++i)
        if (sm_set_real(&INSTANCE->core, vr[i], value[i]))
            return fail(c, "fmi2SetReal: only the inputs can be set");
    return fmi2OK;
}

/* Getters and setters of the types the unit has no variable of. */
#define NO_VARIABLES(function, type, message)                                              \
    SM_EXPORT fmi2Status function(fmi2Component c, const fmi2ValueReference vr[], size_t nvr, \
                                  type value[])                                              \
    {                                                                                        \
        (void)vr;                                                                            \
        (void)value;                                                                         \
        NEED_INSTANCE();                                                                     \
        return nvr ? fail(c, #function ": " message) : fmi2OK;                               \
    }

NO_VARIABLES(fmi2GetInteger, fmi2Integer, "the unit has no Integer")
NO_VARIABLES(fmi2GetString, fmi2String, "the unit has no String")
NO_VARIABLES(fmi2SetInteger, const fmi2Integer, "the unit has no Integer")
NO_VARIABLES(fmi2SetBoolean, const fmi2Boolean, "in_domain is an output")
NO_VARIABLES(fmi2SetString, const fmi2String, "the unit has no String")

SM_EXPORT fmi2Status fmi2GetFMUstate(fmi2Component c, fmi2FMUstate *state)
{
    NEED_INSTANCE();
    return sm_state_save(&INSTANCE->core, state) ? fail(c, "fmi2GetFMUstate: out of memory")
                                                  : fmi2OK;
}

SM_EXPORT fmi2Status fmi2SetFMUstate(fmi2Component c, fmi2FMUstate state)
{
    NEED_INSTANCE();
    return sm_state_restore(&INSTANCE->core, state) ? fail(c, "fmi2SetFMUstate: no state")
                                                    : fmi2OK;
}

SM_EXPORT fmi2Status fmi2FreeFMUstate(fmi2Component c, fmi2FMUstate *state)
{
    NEED_INSTANCE();
    sm_state_free(state);
    return fmi2OK;
}

SM_EXPORT fmi2Status fmi2SerializedFMUstateSize(fmi2Component c, fmi2FMUstate state,
                                                size_t *size)
{
    NEED_INSTANCE();
    (void)state;
    *size = sm_serialized_size();
    return fmi2OK;
}

SM_EXPORT fmi2Status fmi2SerializeFMUstate(fmi2Component c, fmi2FMUstate state,
                                           fmi2Byte bytes[], size_t size)
{
    NEED_INSTANCE();
    if (!state || size < sm_serialized_size())
        return fail(c, "fmi2SerializeFMUstate: buffer too small");
    sm_serialize(state, (unsigned char *)bytes);
    return fmi2OK;
}

SM_EXPORT fmi2Status fmi2DeSerializeFMUstate(fmi2Component c, const fmi2Byte bytes[],
                                             size_t size, fmi2FMUstate *state)
{
    NEED_INSTANCE();
    return sm_state_from_bytes((const unsigned char *)bytes, size, state)
               ? fail(c, "fmi2DeSerializeFMUstate: the bytes are not a state of this unit")
               : fmi2OK;
}

SM_EXPORT fmi2Status fmi2GetDirectionalDerivative(fmi2Component c,
                                                  const fmi2ValueReference vUnknown_ref[],
                                                  size_t nUnknown,
                                                  const fmi2ValueReference vKnown_ref[],
                                                  size_t nKnown, const fmi2Real dvKnown[],
                                                  fmi2Real dvUnknown[])
{
    NEED_INSTANCE();
    if (sm_directional(&INSTANCE->core, vUnknown_ref, nUnknown, vKnown_ref, nKnown, dvKnown,
                       dvUnknown))
        return fail(c, "fmi2GetDirectionalDerivative: the knowns must be inputs and the unknowns "
                    "Real outputs or margins");
    return fmi2OK;
}

/* Model exchange: no continuous states; the event indicators are the distances to the
 * training range, so in_domain changes at an event. */

SM_EXPORT fmi2Status fmi2EnterEventMode(fmi2Component c)
{
    NEED_INSTANCE();
    INSTANCE->core.mode = SM_EVENT;
    return fmi2OK;
}

SM_EXPORT fmi2Status fmi2NewDiscreteStates(fmi2Component c, fmi2EventInfo *info)
{
    NEED_INSTANCE();
    sm_event_update(&INSTANCE->core);
    info->newDiscreteStatesNeeded = fmi2False;
    info->terminateSimulation = fmi2False;
    info->nominalsOfContinuousStatesChanged = fmi2False;
    info->valuesOfContinuousStatesChanged = fmi2False;
    info->nextEventTimeDefined = fmi2False;
    info->nextEventTime = 0.0;
    return fmi2OK;
}

SM_EXPORT fmi2Status fmi2EnterContinuousTimeMode(fmi2Component c)
{
    NEED_INSTANCE();
    INSTANCE->core.mode = SM_CONTINUOUS;
    return fmi2OK;
}

SM_EXPORT fmi2Status fmi2CompletedIntegratorStep(fmi2Component c,
                                                 fmi2Boolean noSetFMUStatePriorToCurrentPoint,
                                                 fmi2Boolean *enterEventMode,
                                                 fmi2Boolean *terminateSimulation)
{
    NEED_INSTANCE();
    (void)noSetFMUStatePriorToCurrentPoint;
    *enterEventMode = fmi2False;
    *terminateSimulation = fmi2False;
    return fmi2OK;
}

SM_EXPORT fmi2Status fmi2SetTime(fmi2Component c, fmi2Real time)
{
    NEED_INSTANCE();
    INSTANCE->core.time = time;
    return fmi2OK;
}

SM_EXPORT fmi2Status fmi2SetContinuousStates(fmi2Component c, const fmi2Real x[], size_t nx)
{
    (void)x;
    NEED_INSTANCE();
    return nx ? fail(c, "the unit has no continuous states") : fmi2OK;
}

SM_EXPORT fmi2Status fmi2GetDerivatives(fmi2Component c, fmi2Real derivatives[], size_t nx)
{
    (void)derivatives;
    NEED_INSTANCE();
    return nx ? fail(c, "the unit has no continuous states") : fmi2OK;
}

SM_EXPORT fmi2Status fmi2GetEventIndicators(fmi2Component c, fmi2Real eventIndicators[],
                                            size_t ni)
{
    double indicators[SM_N_INDICATORS];
    NEED_INSTANCE();
    if (ni != SM_N_INDICATORS)
        return fail(c, "fmi2GetEventIndicators: ni is not numberOfEventIndicators");
    sm_event_indicators(&INSTANCE->core, indicators);
    memcpy(eventIndicators, indicators, sizeof indicators);
    return fmi2OK;
}

SM_EXPORT fmi2Status fmi2GetContinuousStates(fmi2Component c, fmi2Real x[], size_t nx)
{
    (void)x;
    NEED_INSTANCE();
    return nx ? fail(c, "the unit has no continuous states") : fmi2OK;
}

SM_EXPORT fmi2Status fmi2GetNominalsOfContinuousStates(fmi2Component c, fmi2Real x_nominal[],
                                                       size_t nx)
{
    (void)x_nominal;
    NEED_INSTANCE();
    return nx ? fail(c, "the unit has no continuous states")
              : fmi2OK;
}

/* Co-simulation: a step evaluates the network at the inputs set for it; nothing is allocated. */

SM_EXPORT fmi2Status fmi2SetRealInputDerivatives(fmi2Component c, const fmi2ValueReference vr[],
                                                 size_t nvr, const fmi2Integer order[],
                                                 const fmi2Real value[])
{
    (void)vr;
    (void)order;
    (void)value;
    NEED_INSTANCE();
    return nvr ? fail(c, "fmi2SetRealInputDerivatives: canInterpolateInputs is false")
               : fmi2OK;
}

SM_EXPORT fmi2Status fmi2GetRealOutputDerivatives(fmi2Component c, const fmi2ValueReference vr[],
                                                  size_t nvr, const fmi2Integer order[],
                                                  fmi2Real value[])
{
    (void)vr;
    (void)order;
    (void)value;
    NEED_INSTANCE();
    return nvr ? fail(c, "fmi2GetRealOutputDerivatives: maxOutputDerivativeOrder is 0")
               : fmi2OK;
}

SM_EXPORT fmi2Status fmi2DoStep(fmi2Component c, fmi2Real currentCommunicationPoint,
                                fmi2Real communicationStepSize,
                                fmi2Boolean noSetFMUStatePriorToCurrentPoint)
{
    double ignored;
    NEED_INSTANCE();
    (void)noSetFMUStatePriorToCurrentPoint;
    INSTANCE->core.time = currentCommunicationPoint + communicationStepSize;
    sm_get_real(&INSTANCE->core, SM_VR_VALUE, &ignored); /* evaluate at the step's inputs */
    sm_update_discrete(&INSTANCE->core);
    return fmi2OK;
}

SM_EXPORT fmi2Status fmi2CancelStep(fmi2Component c)
{
    NEED_INSTANCE();
    return fail(c, "fmi2CancelStep: steps end at once, none can be pending");
}

SM_EXPORT fmi2Status fmi2GetStatus(fmi2Component c, const fmi2StatusKind s, fmi2Status *value)
{
    NEED_INSTANCE();
    if (s != fmi2DoStepStatus)
        return fmi2Discard;
    *value = fmi2OK;
    return fmi2OK;
}

SM_EXPORT fmi2Status fmi2GetRealStatus(fmi2Component c, const fmi2StatusKind s, fmi2Real *value)
{
    NEED_INSTANCE();
    if (s != fmi2LastSuccessfulTime)
        return fmi2Discard;
    *value = INSTANCE->core.time;
    return fmi2OK;
}

SM_EXPORT fmi2Status fmi2GetIntegerStatus(fmi2Component c, const fmi2StatusKind s,
                                          fmi2Integer *value)
{
    (void)s;
    (void)value;
    NEED_INSTANCE();
    return fmi2Discard;
}

SM_EXPORT fmi2Status fmi2GetBooleanStatus(fmi2Component c, const fmi2StatusKind s,
                                          fmi2Boolean *value)
{
    NEED_INSTANCE();
    if (s != fmi2Terminated)
        return fmi2Discard;
    *value = fmi2False;
    return fmi2OK;
}

SM_EXPORT fmi2Status fmi2GetStringStatus(fmi2Component c, const fmi2StatusKind s,
                                         fmi2String *value)
{
    (void)s;
    (void)value;
    NEED_INSTANCE();
    return fmi2Discard;
}
