module github.com/hearth-pki/hearth/agent

go 1.27.3

require (
	github.com/eclipse/paho.mqtt.golang v1.5.1
	github.com/hearth-pki/hearth/protocol v0.0.0
)

require (
	github.com/gorilla/websocket v1.5.3 // indirect
	golang.org/x/net v0.63.0 // indirect
	golang.org/x/sync v0.17.0 // indirect
)

replace github.com/hearth-pki/hearth/protocol => ../protocol
