module github.com/hearth-pki/hearth/protocol

go 1.27.3
