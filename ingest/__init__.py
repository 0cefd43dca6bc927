"""Gate kiosks: pass verification, QR reading, thermometers, durable publishing."""
