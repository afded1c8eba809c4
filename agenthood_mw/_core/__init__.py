"""The sans-I/O core: every decision the middlewares make, drivable by a plain unit test.

Nothing in this package performs I/O, starts tasks or imports an HTTP framework's request
machinery. The ASGI and WSGI shells feed it bytes and send what it decides.
"""
