module github.com/hearth-pki/hearth/protocol

go 1.26.0
