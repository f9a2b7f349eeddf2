"""HL7 v2 over MLLP: ORU^R01 lab results and ADT^A04/A08 registrations."""
