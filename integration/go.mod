module github.com/oidcauth/oidcauth/integration

go 1.26.0

replace github.com/oidcauth/oidcauth => ../
