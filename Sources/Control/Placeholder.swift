// Control module — placeholder until its first real file lands.
enum ControlPlaceholder {}
