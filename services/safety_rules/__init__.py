"""safety_rules: records every event and evaluates the study's rule pack on it."""
