// CallFlow module — placeholder until its first real file lands.
enum CallFlowPlaceholder {}
