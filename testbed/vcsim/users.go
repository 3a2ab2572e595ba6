package main

// -users FILE: more accounts than the one -username/-password gives, so a
// test can log in as an operator and as the autoscaler account the operator
// makes for a Ray head (README, "Security"), and tell their sessions apart.
//
// govmomi v0.56.0's SessionManager.Authenticate (simulator/session_manager.go)
// accepts exactly the -username/-password pair of the service URL, unless its
// ValidLogin hook is set: then that hook decides. A session's UserName is the
// login's user name (createSession), which the method trace records.
//
// The file holds one "user<TAB>password" per line (the separator is a tab, so
// that a password may hold spaces); blank lines and lines starting with # are
// skipped. The -username/-password pair stays valid.
//
// The file is read again at every login, as vCenter's SSO checks a password
// against its current directory: rewriting it changes a user's password while
// vcsim runs, and a login with the old one fails from then on (a test rotates
// the Ray head's password so). Sessions already open stay, as in vCenter,
// where changing a password ends no session. A file that no longer reads
// accepts none of its users.

import (
	"bufio"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

var usersFile = new(string)

func readUsers(path string) (map[string]string, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	users := make(map[string]string)
	scanner := bufio.NewScanner(file)
	for number := 1; scanner.Scan(); number++ {
		line := scanner.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, password, found := strings.Cut(line, "\t")
		if !found || name == "" || password == "" {
			return nil, fmt.Errorf("-users %s:%d: not user<TAB>password", path, number)
		}
		users[name] = password
	}
	return users, scanner.Err()
}

// acceptUsers makes the SessionManager accept the -username/-password pair and every account of the -users file.
func acceptUsers(model *simulator.Model, username, password, path string) error {
	if path == "" {
		return nil
	}
	if username == "" {
		return fmt.Errorf("-users needs -username and -password: without them vcsim accepts any login")
	}
	if _, err := readUsers(path); err != nil {
		return err
	}
	model.Map().SessionManager().ValidLogin = func(login *types.Login) bool {
		if login.UserName == username {
			return login.Password == password
		}
		users, err := readUsers(path)
		if err != nil {
			log.Printf("-users %s: %s", path, err)
			return false
		}
		expected, known := users[login.UserName]
		return known && login.Password == expected
	}
	return nil
}
