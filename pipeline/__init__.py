"""computewatch: streaming telemetry and anomaly detection for LLM inference-time compute."""
