// Intentionally empty: the C++ headers are included by CEchoCanceller's .cpp file only.
