"""Constants and layouts shared by rtl/, golden/ and docs (formats, descriptor and packet
layouts, CSR maps). Pure Python: imports neither Amaranth nor numpy-heavy code."""
