import CallFlow

// CallFlow and Store both name a `CallOutcome` and a `CallDirection`, and the module
// `CallFlow` holds a type `CallFlow`, so `CallFlow.CallOutcome` cannot qualify it. This file
// imports CallFlow alone and gives its two types unambiguous names for the files that
// import both modules.
typealias FlowCallOutcome = CallOutcome
typealias FlowCallDirection = CallDirection
