#!/bin/sh
# CGI wrapper for fcgiwrap: fresh credentials as JSON (the /new location of
# chatmail.conf). Add --self-signed when the relay's certificate is self-signed.
exec /usr/bin/chatmail newemail --config /etc/chatmail/chatmail.ini
